import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VerifiedTokenCache } from '../src/verifiedTokenCache.js';
import { GatewayError } from '../src/gatewayError.js';
import type { Authenticator, ClientIdentity } from '../src/authenticator.js';

function counting(expiresAt: Date): Authenticator & { calls: number } {
  const auth = {
    calls: 0,
    async verifyClient(token: string): Promise<ClientIdentity> {
      auth.calls++;
      if (token === 'bad') throw new GatewayError('UNAUTHENTICATED', 'bad token');
      return { subject: 's', project: token, scopes: ['build'], expiresAt, tokenId: undefined, buildId: undefined };
    },
    async verifyAgent(): Promise<never> {
      throw new GatewayError('UNAUTHENTICATED', 'not here');
    },
    async verifyReplica(): Promise<never> {
      throw new GatewayError('UNAUTHENTICATED', 'not here');
    },
  };
  return auth;
}

test('a verified token is not checked again while fresh', async () => {
  let now = 1_000_000;
  const inner = counting(new Date(now + 3_600_000));
  const cache = new VerifiedTokenCache(inner, { maxEntries: 10, maxAgeMs: 60_000, now: () => now });
  assert.equal((await cache.verifyClient('p1')).project, 'p1');
  assert.equal((await cache.verifyClient('p1')).project, 'p1');
  assert.equal(inner.calls, 1);
  now += 60_001;
  await cache.verifyClient('p1');
  assert.equal(inner.calls, 2, 'checked again after maxAgeMs');
});

test('never trusted past the token expiry', async () => {
  let now = 1_000_000;
  const inner = counting(new Date(now + 5_000));
  const cache = new VerifiedTokenCache(inner, { maxEntries: 10, maxAgeMs: 60_000, now: () => now });
  await cache.verifyClient('p1');
  now += 5_001;
  await cache.verifyClient('p1');
  assert.equal(inner.calls, 2);
});

test('failures are not cached and the cache stays bounded', async () => {
  const now = 1_000_000;
  const inner = counting(new Date(now + 3_600_000));
  const cache = new VerifiedTokenCache(inner, { maxEntries: 2, maxAgeMs: 60_000, now: () => now });
  await assert.rejects(cache.verifyClient('bad'));
  await assert.rejects(cache.verifyClient('bad'));
  assert.equal(inner.calls, 2);
  await cache.verifyClient('a');
  await cache.verifyClient('b');
  await cache.verifyClient('c'); // evicts 'a'
  const before = inner.calls;
  await cache.verifyClient('c');
  await cache.verifyClient('a');
  assert.equal(inner.calls, before + 1, "'c' was cached, 'a' had been evicted");
});
