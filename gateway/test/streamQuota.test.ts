import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamQuota, streamQuotaKey, type ReleaseStream } from '../src/streamQuota.js';
import { GatewayError } from '../src/gatewayError.js';

function held(result: ReleaseStream | GatewayError): ReleaseStream {
  assert.ok(!(result instanceof GatewayError), `expected a slot, got ${result instanceof GatewayError ? result.message : ''}`);
  return result;
}

function refused(result: ReleaseStream | GatewayError): GatewayError {
  assert.ok(result instanceof GatewayError, 'expected a refusal');
  return result;
}

test('a token gets its quota of concurrent streams, then RATE_LIMITED saying the figures', () => {
  const quota = new StreamQuota({ maxStreamsPerKey: 3, maxKeys: 10 });
  const releases = [held(quota.acquire('jti:a')), held(quota.acquire('jti:a')), held(quota.acquire('jti:a'))];
  const err = refused(quota.acquire('jti:a'));
  assert.equal(err.code, 'RATE_LIMITED');
  assert.equal(err.message, 'too many concurrent tunnel streams for this token: 3 open, limit 3 per token; retry when one of them has ended');
  assert.doesNotMatch(err.message, /jti:a/);
  assert.equal(quota.active('jti:a'), 3);
  releases[0]!();
  held(quota.acquire('jti:a'));
  refused(quota.acquire('jti:a'));
});

test("one token's full quota does not affect another token", () => {
  const quota = new StreamQuota({ maxStreamsPerKey: 2, maxKeys: 10 });
  held(quota.acquire('jti:noisy'));
  held(quota.acquire('jti:noisy'));
  refused(quota.acquire('jti:noisy'));
  held(quota.acquire('jti:quiet'));
  held(quota.acquire('jti:quiet'));
});

test('release is idempotent: a second call does not free another stream', () => {
  const quota = new StreamQuota({ maxStreamsPerKey: 2, maxKeys: 10 });
  const first = held(quota.acquire('k'));
  held(quota.acquire('k'));
  first();
  first();
  first();
  assert.equal(quota.active('k'), 1, 'two acquired, one released (three times)');
  held(quota.acquire('k'));
  refused(quota.acquire('k'));
});

test('a key leaves the table with its last stream, and the table is bounded without forgetting counts', () => {
  const quota = new StreamQuota({ maxStreamsPerKey: 1, maxKeys: 100 });
  const releases: ReleaseStream[] = [];
  let refusals = 0;
  for (let i = 0; i < 100_000; i++) {
    const r = quota.acquire(`jti:${i}`);
    if (r instanceof GatewayError) {
      refusals++;
      assert.equal(r.code, 'RATE_LIMITED');
    } else releases.push(r);
    assert.ok(quota.size <= 100);
  }
  assert.equal(releases.length, 100);
  assert.equal(refusals, 100_000 - 100);
  assert.match(refused(quota.acquire('jti:late')).message, /holds open streams for 100 tokens, its limit 100/);
  // A key already holding streams is still refused by its own quota, not let through by the full table.
  refused(quota.acquire('jti:0'));
  for (const release of releases) release();
  assert.equal(quota.size, 0);
  held(quota.acquire('jti:late'));
});

test('keys: jti when the token has one, else subject within project, never ambiguous', () => {
  assert.equal(streamQuotaKey({ tokenId: 'abc', subject: 's', project: 'p' }), 'jti:abc');
  const a = streamQuotaKey({ tokenId: undefined, subject: 'ci:a', project: 'b' });
  const b = streamQuotaKey({ tokenId: undefined, subject: 'ci', project: 'a:b' });
  assert.notEqual(a, b);
  assert.notEqual(streamQuotaKey({ tokenId: undefined, subject: 's', project: 'p1' }), streamQuotaKey({ tokenId: undefined, subject: 's', project: 'p2' }));
  assert.notEqual(streamQuotaKey({ tokenId: 'x', subject: 's', project: 'p' }), streamQuotaKey({ tokenId: undefined, subject: 'x', project: '' }));
});

test('options are checked', () => {
  assert.throws(
    () => new StreamQuota({ maxStreamsPerKey: 0, maxKeys: Number.NaN }),
    (err: unknown) => err instanceof GatewayError && err.code === 'CONFIG_INVALID' && /maxStreamsPerKey/.test(err.message) && /maxKeys/.test(err.message),
  );
});
