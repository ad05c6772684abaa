import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { AUDIT_FLUSH_CHARS, auditSink } from '../src/auditSink.js';

function capture(): { stream: PassThrough; writes: string[] } {
  const stream = new PassThrough();
  const writes: string[] = [];
  stream.on('data', (chunk: Buffer) => writes.push(chunk.toString()));
  return { stream, writes };
}

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('lines queued together reach standard error in one write, after the flush interval and not before', async () => {
  const stderr = capture();
  const sink = auditSink(undefined, stderr.stream, 100);
  sink.write('{"a":1}\n');
  sink.write('{"a":2}\n');
  sink.write('{"a":3}\n');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(stderr.writes, [], 'nothing is written in the turn the lines were queued');
  await tick(300);
  assert.deepEqual(stderr.writes, ['{"a":1}\n{"a":2}\n{"a":3}\n']);
  sink.write('{"a":4}\n');
  await tick(300);
  assert.deepEqual(stderr.writes, ['{"a":1}\n{"a":2}\n{"a":3}\n', '{"a":4}\n']);
});

test('flush() writes what is queued at once, and the timer it replaces writes nothing twice', async () => {
  const stderr = capture();
  const sink = auditSink(undefined, stderr.stream, 100);
  sink.write('{"b":1}\n');
  sink.flush();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(stderr.writes, ['{"b":1}\n']);
  await tick(300);
  assert.deepEqual(stderr.writes, ['{"b":1}\n']);
  sink.flush();
  assert.deepEqual(stderr.writes, ['{"b":1}\n'], 'an empty flush writes nothing');
});

test('a queue that reaches AUDIT_FLUSH_CHARS is written at once, without waiting for the interval', async () => {
  const stderr = capture();
  const sink = auditSink(undefined, stderr.stream, 60_000);
  const line = `{"e":"${'x'.repeat(1000)}"}\n`;
  const lines = Math.ceil(AUDIT_FLUSH_CHARS / line.length);
  for (let i = 0; i < lines; i++) sink.write(line);
  await new Promise((r) => setImmediate(r));
  assert.equal(stderr.writes.join(''), line.repeat(lines));
  sink.write('{"e":"last"}\n');
  await new Promise((r) => setImmediate(r));
  assert.equal(stderr.writes.length, 1, 'a short queue waits for the interval');
  sink.flush();
});

test('with a file, lines are appended to it (mode 0600); a file that cannot be opened sends them to standard error, with one notice', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-audit-'));
  try {
    const file = path.join(dir, 'audit.log');
    fs.writeFileSync(file, '{"old":true}\n', { mode: 0o600 });
    const stderr = capture();
    const sink = auditSink(file, stderr.stream, 20);
    sink.write('{"c":1}\n');
    sink.write('{"c":2}\n');
    await tick(200);
    assert.equal(fs.readFileSync(file, 'utf8'), '{"old":true}\n{"c":1}\n{"c":2}\n');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(stderr.writes, []);

    const broken = capture();
    const nowhere = auditSink(path.join(dir, 'missing', 'audit.log'), broken.stream, 20);
    nowhere.write('{"d":1}\n');
    await tick(200);
    nowhere.write('{"d":2}\n');
    await tick(200);
    const text = broken.writes.join('');
    assert.match(text, /audit log .*missing\/audit\.log failed/);
    assert.equal(text.match(/failed/g)?.length, 1);
    assert.match(text, /\{"d":2\}\n/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
