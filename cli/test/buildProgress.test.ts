import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressPrinter, type StatusMessage } from '../src/build/progressPrinter.js';

const ts = (seconds: number) => ({ seconds: String(seconds), nanos: 0 });
const empty: StatusMessage = { vertexes: [], statuses: [], logs: [], warnings: [] };

test('plain progress numbers steps, prefixes log lines, and keeps the failing step\'s tail', () => {
  let out = '';
  const printer = new ProgressPrinter('plain', (t) => (out += t));
  printer.update({ ...empty, vertexes: [{ digest: 'a', inputs: [], name: '[1/2] COPY x /x', cached: true, started: ts(10), completed: ts(10), error: '' }] });
  printer.update({ ...empty, vertexes: [{ digest: 'b', inputs: ['a'], name: '[2/2] RUN make', cached: false, started: ts(11), completed: null, error: '' }] });
  printer.update({ ...empty, logs: [{ vertex: 'b', timestamp: ts(12), stream: '1', msg: Buffer.from('line one\nline t') }] });
  printer.update({ ...empty, logs: [{ vertex: 'b', timestamp: ts(12), stream: '2', msg: Buffer.from('wo\n') }] });
  printer.update({ ...empty, vertexes: [{ digest: 'b', inputs: ['a'], name: '[2/2] RUN make', cached: false, started: ts(11), completed: ts(13), error: 'exit code: 2' }] });
  assert.match(out, /^#1 \[1\/2\] COPY x \/x\n#1 CACHED$/m);
  assert.match(out, /^#2 1\.000 line one$/m);
  assert.match(out, /^#2 1\.000 line two$/m, 'a line split across messages is joined');
  assert.match(out, /^#2 ERROR: exit code: 2$/m);
  assert.deepEqual(printer.failedStep(), { name: '[2/2] RUN make', error: 'exit code: 2', tail: ['line one', 'line two'] });
});

test('rawjson prints one JSON line per status message, log bytes in base64; quiet prints nothing', () => {
  let out = '';
  new ProgressPrinter('rawjson', (t) => (out += t)).update({ ...empty, logs: [{ vertex: 'v', timestamp: null, stream: '1', msg: Buffer.from('hi') }] });
  const lines = out.trim().split('\n');
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0]!).logs[0].msg, Buffer.from('hi').toString('base64'));
  let quiet = '';
  new ProgressPrinter('quiet', (t) => (quiet += t)).update({ ...empty, vertexes: [{ digest: 'a', inputs: [], name: 'x', cached: true, started: null, completed: null, error: '' }] });
  assert.equal(quiet, '');
});
