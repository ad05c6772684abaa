import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProgressPrinter } from '../src/build/progressPrinter.js';
import type { StatusMessage, Timestamp } from '../src/build/buildStatus.js';
import { RawJsonProgress, rawJsonOf, rfc3339Nano } from '../src/build/rawJsonProgress.js';
import { TtyProgress } from '../src/build/ttyProgress.js';
import { effectiveMode, progressDisplay } from '../src/build/progressDisplay.js';

const ts = (seconds: number) => ({ seconds: String(seconds), nanos: 0 });
const empty: StatusMessage = { vertexes: [], statuses: [], logs: [], warnings: [] };

// Recorded from `docker buildx build --progress=rawjson` (Debian 13's buildx) against dockerd
// 20.10: two cached steps, the context transfers, a RUN that logs 8 lines, an unfinished line,
// a stderr line, then fails with exit code 3.
const FIXTURE = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/buildx-rawjson-failing-run.json'), 'utf8');
const buildxObjects = FIXTURE.split(/\n(?=\{)/).map((text) => JSON.parse(text) as Record<string, Record<string, unknown>[] | undefined>);

/** Go's RFC 3339 time back into the protobuf Timestamp the Status stream carries. */
function timestampOf(text: unknown): Timestamp | null {
  if (typeof text !== 'string') return null;
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(text)!;
  return { seconds: String(Date.parse(`${m[1]}Z`) / 1000), nanos: Number((m[2] ?? '').padEnd(9, '0')) };
}

/** buildx's JSON of a SolveStatus back into the Status message BuildKit sent. */
function statusOf(o: Record<string, Record<string, unknown>[] | undefined>): StatusMessage {
  return {
    vertexes: (o['vertexes'] ?? []).map((v) => ({ digest: String(v['digest'] ?? ''), inputs: (v['inputs'] as string[] | undefined) ?? [], name: String(v['name'] ?? ''), cached: v['cached'] === true, started: timestampOf(v['started']), completed: timestampOf(v['completed']), error: String(v['error'] ?? '') })),
    statuses: (o['statuses'] ?? []).map((s) => ({ ID: String(s['id']), vertex: String(s['vertex'] ?? ''), name: String(s['name'] ?? ''), current: String(s['current'] ?? 0), total: String(s['total'] ?? 0), timestamp: timestampOf(s['timestamp']), started: timestampOf(s['started']), completed: timestampOf(s['completed']) })),
    logs: (o['logs'] ?? []).map((l) => ({ vertex: String(l['vertex'] ?? ''), stream: String(l['stream'] ?? 0), msg: Buffer.from(String(l['data']), 'base64'), timestamp: timestampOf(l['timestamp']) })),
    warnings: (o['warnings'] ?? []).map((w) => ({ vertex: String(w['vertex'] ?? ''), level: String(w['level'] ?? 0), short: Buffer.from(String(w['short'] ?? ''), 'base64'), detail: ((w['detail'] as string[] | undefined) ?? []).map((d) => Buffer.from(d, 'base64')), url: String(w['url'] ?? '') })),
  };
}
const recorded = buildxObjects.map(statusOf);
/** The builder's clock at the recording's first message, in milliseconds. */
const recordingStart = Math.min(...recorded.flatMap((m) => m.vertexes.map((v) => (v.started ? Number(v.started.seconds) * 1000 : Infinity))));

class FakeTerminal {
  constructor(
    public width: number,
    public height = 40,
  ) {}
  isTty = true;
  columns = () => this.width;
  rows = () => this.height;
}

/** The frames written, with the cursor movements and line clears taken out. */
function framesOf(out: string): string[][] {
  return out
    .split(/\x1b\[J/)
    .filter((f) => f.includes('[+] Building'))
    .map((f) => f.replace(/\x1b\[\d+A\r/g, '').replace(/\x1b\[2K/g, '').split('\n').filter((l) => l !== ''));
}

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

test('plain progress of a recorded build: the cached steps say CACHED, the failing one ERROR, with the platform prefix', () => {
  let out = '';
  const printer = new ProgressPrinter('plain', (t) => (out += t), '[linux/amd64] ');
  for (const m of recorded) printer.update(m);
  assert.match(out, /^\[linux\/amd64\] #\d+ \[1\/3\] COPY busybox \/bin\/busybox\n\[linux\/amd64\] #(\d+) CACHED$/m);
  assert.match(out, /^\[linux\/amd64\] #\d+ ERROR: executor failed running .*exit code: 3$/m);
  assert.match(out, /^\[linux\/amd64\] #\d+ transferring dockerfile: \d+B done$/m);
  assert.deepEqual(printer.failedStep()?.tail.slice(-2), ['log-line-8', 'partial-no-newlineabout-to-fail']);
});

test('rawjson writes each message as buildx does: the recorded buildx objects come back field for field, one per line', () => {
  let out = '';
  const progress = new RawJsonProgress((t) => (out += t));
  for (const m of recorded) progress.update(m);
  const lines = out.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, buildxObjects.length, 'one line per status message');
  lines.forEach((line, i) => assert.deepEqual(JSON.parse(line), buildxObjects[i], `message ${i}`));
  // Key order and Go's escapes too: the same bytes as Go's compact encoding.
  const goCompact = (o: unknown) => JSON.stringify(o).replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  lines.forEach((line, i) => assert.equal(line, goCompact(buildxObjects[i])));
  assert.match(progress.failedStep()?.error ?? '', /exit code: 3/);
  assert.equal(rfc3339Nano({ seconds: '0', nanos: 0 }), '1970-01-01T00:00:00Z');
  assert.equal(rfc3339Nano({ seconds: '1', nanos: 120_000_000 }), '1970-01-01T00:00:01.12Z');
  assert.equal(rawJsonOf(empty), '{}');
});

test('quiet writes nothing but still knows the failing step', () => {
  let out = '';
  const display = progressDisplay('quiet', new FakeTerminal(80), (t) => (out += t));
  const solve = display.solve('');
  for (const m of recorded) solve.update(m);
  display.finish();
  assert.equal(out, '');
  assert.match(solve.failedStep()?.name ?? '', /^\[3\/3\] RUN/);
});

test('auto is tty on a terminal and plain elsewhere; tty without a terminal degrades to plain', () => {
  const tty = new FakeTerminal(80);
  const pipe = { ...new FakeTerminal(80), isTty: false };
  assert.equal(effectiveMode('auto', tty), 'tty');
  assert.equal(effectiveMode('auto', pipe), 'plain');
  assert.equal(effectiveMode('tty', pipe), 'plain');
  assert.equal(effectiveMode('rawjson', tty), 'rawjson');
  let out = '';
  const display = progressDisplay('tty', pipe, (t) => (out += t));
  const solve = display.solve('');
  for (const m of recorded) solve.update(m);
  display.finish();
  assert.doesNotMatch(out, /\x1b\[/, 'no escape sequences on a pipe');
  assert.match(out, /#\d+ CACHED/);
});

test('tty: a live frame shows the running step with its time and last log lines, redrawn in place, within the width', () => {
  let now = recordingStart;
  let out = '';
  const terminal = new FakeTerminal(70);
  const view = new TtyProgress((t) => (out += t), terminal, () => now);
  const solve = view.solve('');
  // Up to the last log message, before the RUN step's end.
  const lastLog = recorded.findLastIndex((m) => m.logs.length > 0);
  for (const m of recorded.slice(0, lastLog)) solve.update(m);
  now = recordingStart + 2500;
  view.tick();
  now = recordingStart + 3000;
  view.tick();
  view.finish();
  const frames = framesOf(out);
  assert.equal(frames.length, 3, 'two live frames and the final one');
  const live = frames[1]!;
  assert.match(live[0]!, /^\[\+\] Building 3\.0s \(\d+\/\d+\)$/);
  for (const line of frames.flat()) assert.ok([...line].length <= 70, `wider than the terminal: ${line}`);
  assert.match(live.join('\n'), /^ => CACHED \[1\/3\] COPY busybox \/bin\/busybox +0\.0s$/m);
  const running = live.find((l) => l.startsWith(' => [3/3] RUN'))!;
  assert.ok(running, live.join('\n'));
  assert.equal(running.length, 70, 'the time is right-aligned at the terminal\'s edge');
  assert.match(running, / \d+\.\ds$/);
  const logLines = live.filter((l) => l.startsWith(' => => # '));
  assert.equal(logLines.length, 6, 'the last six log lines of the running step');
  assert.deepEqual(logLines.slice(-2), [' => => # log-line-8', ' => => # partial-no-newline']);
  // The second frame was drawn over the first: the cursor went up by the first frame's height.
  const second = out.split('\x1b[J')[1]!;
  assert.ok(second.startsWith(`\x1b[${frames[0]!.length}A\r`), JSON.stringify(second.slice(0, 12)));
  assert.match(live.join('\n'), /^ => => transferring context: [\d.]+k?B done +\d\.\ds$/m);
});

test('tty: the final frame says FINISHED, keeps every step with its time, and the failing step\'s log under ERROR', () => {
  let now = recordingStart;
  let out = '';
  const view = new TtyProgress((t) => (out += t), new FakeTerminal(100), () => now);
  const solve = view.solve('[linux/amd64] ');
  for (const m of recorded) solve.update(m);
  now += 4000;
  view.finish();
  view.finish();
  const frames = framesOf(out);
  assert.equal(frames.length, 1, 'nothing was drawn before the timer ran; finish() is idempotent');
  const final = frames[0]!.join('\n');
  assert.match(final, /^\[\+\] Building 4\.0s \(6\/6\) FINISHED$/m);
  assert.match(final, /^ => CACHED \[linux\/amd64\] \[2\/3\] RUN .* 0\.0s$/m);
  assert.match(final, /^ => ERROR \[linux\/amd64\] \[3\/3\] RUN .* 2\.0s$/m, 'the failed step\'s own time: completed - started');
  assert.match(final, /^ => \[linux\/amd64\] \[internal\] load build definition from Dockerfile +0\.\ds$/m);
  assert.match(final, /^ => => # log-line-1\n( => => # .*\n)* => => # partial-no-newlineabout-to-fail$/m);
  assert.deepEqual(solve.failedStep()?.tail.slice(0, 1), ['log-line-1']);
});

test('tty: a live frame never outgrows the screen (finished steps go first), so the cursor can get back to its top', () => {
  let now = recordingStart;
  let out = '';
  const view = new TtyProgress((t) => (out += t), new FakeTerminal(80, 6), () => now);
  const solve = view.solve('');
  const lastLog = recorded.findLastIndex((m) => m.logs.length > 0);
  for (const m of recorded.slice(0, lastLog + 1)) solve.update(m);
  now += 1000;
  view.tick();
  const live = framesOf(out)[0]!;
  assert.ok(live.length <= 5, live.join('\n'));
  assert.match(live.join('\n'), /about-to-fail/, 'the running step\'s newest log line stays');
  view.finish();
  const final = framesOf(out)[1]!;
  assert.ok(final.length > 6, 'the final frame is whole, scrolling as it must');
});

test('tty: log text with carriage returns, tabs and escapes cannot break the frame', () => {
  let out = '';
  const view = new TtyProgress((t) => (out += t), new FakeTerminal(40), () => 10_000);
  const solve = view.solve('');
  solve.update({ ...empty, vertexes: [{ digest: 'a', inputs: [], name: 'RUN x', cached: false, started: ts(10), completed: null, error: '' }] });
  solve.update({ ...empty, logs: [{ vertex: 'a', timestamp: ts(10), stream: '1', msg: Buffer.from('10%\r50%\r100%\n\x1b[31mred\x1b[0m\tz\n') }] });
  view.tick();
  const frame = framesOf(out)[0]!;
  assert.deepEqual(frame.filter((l) => l.startsWith(' => => #')), [' => => # 100%', ' => => # red    z']);
  view.finish();
});

test('tty: several platforms share one view, their steps told apart by prefix and counted together', () => {
  let out = '';
  const view = new TtyProgress((t) => (out += t), new FakeTerminal(120), () => recordingStart + 5000);
  const amd = view.solve('[linux/amd64] ');
  const arm = view.solve('[linux/arm64] ');
  for (const m of recorded) {
    amd.update(m);
    arm.update(m);
  }
  view.finish();
  const final = framesOf(out)[0]!.join('\n');
  assert.match(final, /^\[\+\] Building 0\.0s \(12\/12\) FINISHED$/m);
  assert.match(final, /^ => CACHED \[linux\/amd64\] \[1\/3\] COPY/m);
  assert.match(final, /^ => CACHED \[linux\/arm64\] \[1\/3\] COPY/m);
  assert.match(final, /^ => ERROR \[linux\/arm64\] \[3\/3\] RUN/m);
  assert.equal(arm.failedStep()?.name, amd.failedStep()?.name);
});

test('tty: steps are listed in the order they started, not the order BuildKit first named them', () => {
  let out = '';
  const view = new TtyProgress((t) => (out += t), new FakeTerminal(80), () => 20_000);
  const solve = view.solve('');
  const vertex = (digest: string, name: string, started: number | null) => ({ digest, inputs: [], name, cached: false, started: started === null ? null : ts(started), completed: null, error: '' });
  solve.update({ ...empty, vertexes: [vertex('run', '[2/2] RUN make', null), vertex('copy', '[1/2] COPY . /src', null)] });
  solve.update({ ...empty, vertexes: [vertex('copy', '[1/2] COPY . /src', 11)] });
  solve.update({ ...empty, vertexes: [vertex('run', '[2/2] RUN make', 12)] });
  view.finish();
  const final = framesOf(out)[0]!;
  assert.deepEqual(final.slice(1).map((l) => l.replace(/ +[\d.]+s$/, '')), [' => [1/2] COPY . /src', ' => [2/2] RUN make']);
});
