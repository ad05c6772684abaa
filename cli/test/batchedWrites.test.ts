import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { batchedWrites } from '../src/build/batchedWrites.js';

/** A target that records each write it gets and completes them only when told to (so backpressure shows). */
function slowTarget(): { target: Writable; writes: Buffer[]; release(): void } {
  const writes: Buffer[] = [];
  const pending: Array<() => void> = [];
  const target = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _e, callback) {
      writes.push(chunk);
      pending.push(callback);
    },
  });
  return { target, writes, release: () => pending.splice(0).forEach((cb) => cb()) };
}

test('a corked batch of chunks reaches the target as one buffer (1 MiB at most each), in order and whole', async () => {
  const { target, writes, release } = slowTarget();
  const out = batchedWrites(target);
  const chunks = Array.from({ length: 300 }, (_, i) => randomBytes(i % 2 === 0 ? 9 : 16 * 1024));
  out.cork();
  for (const c of chunks) out.write(c);
  out.uncork();
  const done = new Promise<void>((resolve) => out.write(Buffer.alloc(0), () => resolve()));
  while (Buffer.concat(writes).length < Buffer.concat(chunks).length) {
    release();
    await new Promise((resolve) => setImmediate(resolve));
  }
  release();
  await done;
  assert.deepEqual(Buffer.concat(writes), Buffer.concat(chunks));
  assert.ok(writes.length <= 4, `${chunks.length} chunks became ${writes.length} writes`);
  assert.ok(writes.every((w) => w.length <= 1024 * 1024));
});

test('the batcher waits while the target is full, and ends it when ended', async () => {
  const { target, writes, release } = slowTarget();
  const out = batchedWrites(target);
  let completed = false;
  out.write(randomBytes(200 * 1024), () => (completed = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(completed, false, 'a write the target has not taken is not reported done');
  release();
  await new Promise((resolve) => setImmediate(resolve));
  release();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(completed, true);
  assert.equal(writes.length, 1);
  out.end();
  await once(target, 'finish');
  assert.equal(out.writableFinished, true);
});

test('the batcher goes when the target closes under it', async () => {
  const { target } = slowTarget();
  const out = batchedWrites(target);
  const closed = once(out, 'close');
  target.destroy();
  await closed;
  assert.equal(out.destroyed, true);
});

test('a target that fails takes the batcher down with its error', async () => {
  const { target } = slowTarget();
  const out = batchedWrites(target);
  out.on('error', () => {});
  target.destroy(new Error('tunnel lost'));
  const [err] = (await once(out, 'error')) as [Error];
  assert.match(err.message, /tunnel lost/);
});
