import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../src/backoff.js';

test('full jitter: each delay is uniform in [0, min(cap, base * 2^attempt))', () => {
  const draws = [0.999, 0.999, 0.999, 0.999, 0.999, 0.5, 0];
  const backoff = new Backoff(100, 1_000, () => draws.shift() ?? 0);
  assert.deepEqual(
    [backoff.nextDelayMs(), backoff.nextDelayMs(), backoff.nextDelayMs(), backoff.nextDelayMs(), backoff.nextDelayMs()],
    [99, 199, 399, 799, 999],
  );
  assert.equal(backoff.nextDelayMs(), 500, 'capped at 1000');
  assert.equal(backoff.nextDelayMs(), 0, 'jitter reaches zero');
});

test('reset starts the ladder again', () => {
  const backoff = new Backoff(100, 10_000, () => 0.999);
  backoff.nextDelayMs();
  backoff.nextDelayMs();
  backoff.reset();
  assert.equal(backoff.nextDelayMs(), 99);
});
