import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { pump } from '../src/pump.js';

/** A destination that records how writes reach it: one entry per _write/_writev call. */
function recordingWritable(options: { delayMs?: number; highWaterMark?: number } = {}) {
  const batches: number[] = [];
  const received: Buffer[] = [];
  const finish = (callback: () => void): void => {
    if (options.delayMs) setTimeout(callback, options.delayMs);
    else callback();
  };
  const dst = new Writable({
    highWaterMark: options.highWaterMark ?? 16 * 1024,
    write(chunk: Buffer, _enc, callback) {
      batches.push(1);
      received.push(chunk);
      finish(callback);
    },
    writev(chunks, callback) {
      batches.push(chunks.length);
      for (const c of chunks) received.push(c.chunk as Buffer);
      finish(callback);
    },
  });
  return { dst, batches, received };
}

test('chunks that arrive in one turn of the event loop reach the destination as one write', async () => {
  const src = new PassThrough();
  const { dst, batches, received } = recordingWritable();
  const ended = new Promise<void>((resolve) => pump(src, dst, resolve));
  // What a TLS socket does with a 64 KiB read: several 16 KiB chunks, one after the other.
  const chunks = Array.from({ length: 10 }, (_, i) => Buffer.alloc(1000, i));
  for (const c of chunks) src.write(c);
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(batches, [10], `one writev of all ten chunks, got batches ${JSON.stringify(batches)}`);
  src.end();
  await ended;
  assert.deepEqual(Buffer.concat(received), Buffer.concat(chunks));
});

test('a slow destination pauses the source past the allowance and resumes it on drain; every byte arrives in order', async () => {
  const src = new PassThrough({ highWaterMark: 64 * 1024 });
  const { dst, received } = recordingWritable({ delayMs: 1 });
  const allowance = 64 * 1024;
  let pausedSeen = false;
  const ended = new Promise<void>((resolve) => pump(src, dst, resolve, allowance));
  src.on('pause', () => (pausedSeen = true));
  const sent: Buffer[] = [];
  for (let i = 0; i < 200; i++) {
    const chunk = Buffer.alloc(4096, i % 251);
    sent.push(chunk);
    if (!src.write(chunk)) await once(src, 'drain');
    assert.ok(dst.writableLength <= allowance + 4096 + 64 * 1024, `destination buffer bounded, was ${dst.writableLength}`);
  }
  src.end();
  await ended;
  // The source has ended; what the destination still holds reaches it before it finishes.
  dst.end();
  await once(dst, 'finish');
  assert.ok(pausedSeen, 'the source was paused at least once');
  assert.deepEqual(Buffer.concat(received), Buffer.concat(sent));
});

test('stop() detaches: later chunks and the end are not passed on', async () => {
  const src = new PassThrough();
  const { dst, received } = recordingWritable();
  let ended = false;
  const p = pump(src, dst, () => (ended = true));
  src.write(Buffer.from('one'));
  await new Promise((r) => setImmediate(r));
  p.stop();
  src.write(Buffer.from('two'));
  src.end();
  await new Promise((r) => setImmediate(r));
  assert.equal(Buffer.concat(received).toString(), 'one');
  assert.equal(p.bytes, 3);
  assert.equal(ended, false);
});
