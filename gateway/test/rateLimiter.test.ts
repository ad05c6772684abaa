import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter, RateLimits, addressKey } from '../src/rateLimiter.js';
import { GatewayError } from '../src/gatewayError.js';
import { WireErrorHttpStatus, WsCloseCode } from '@slipway/proto';
import { wireCodeOf } from '../src/gatewayError.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function refusedAfter(limiter: RateLimiter, key: string): number {
  const d = limiter.take(key);
  assert.equal(d.allowed, false, `expected ${key} to be refused`);
  return d.allowed ? 0 : d.retryAfterMs;
}

test('a burst is refused after capacity, with a retry hint that is exact for the refill rate', () => {
  const c = clock();
  const limiter = new RateLimiter({ capacity: 5, refillPerSec: 2, maxKeys: 10, now: c.now });
  for (let i = 0; i < 5; i++) assert.deepEqual(limiter.take('t1'), { allowed: true }, `request ${i + 1} of the burst`);
  assert.equal(refusedAfter(limiter, 't1'), 500, 'one token comes back every 500 ms at 2/s');
  c.advance(499);
  assert.equal(refusedAfter(limiter, 't1'), 1, 'a refusal costs nothing and the hint counts down');
  c.advance(1);
  assert.deepEqual(limiter.take('t1'), { allowed: true });
  assert.equal(refusedAfter(limiter, 't1'), 500);
});

test('the retry hint holds for rates that are not whole milliseconds per token', () => {
  for (const refillPerSec of [3, 7, 0.3, 1 / 60]) {
    const c = clock();
    const limiter = new RateLimiter({ capacity: 2, refillPerSec, maxKeys: 10, now: c.now });
    limiter.take('k');
    limiter.take('k');
    const hint = refusedAfter(limiter, 'k');
    assert.equal(hint, Math.ceil(1000 / refillPerSec), `hint at ${refillPerSec}/s`);
    c.advance(hint - 1);
    assert.equal(limiter.take('k').allowed, false, `one ms before the hint at ${refillPerSec}/s`);
    c.advance(1);
    assert.equal(limiter.take('k').allowed, true, `at the hint at ${refillPerSec}/s`);
  }
});

test('a cost above one waits for that many tokens', () => {
  const c = clock();
  const limiter = new RateLimiter({ capacity: 10, refillPerSec: 10, maxKeys: 10, now: c.now });
  assert.equal(limiter.take('k', 8).allowed, true);
  const d = limiter.take('k', 5);
  assert.deepEqual(d, { allowed: false, retryAfterMs: 300 }, '2 left, 3 more at 100 ms each');
  c.advance(300);
  assert.equal(limiter.take('k', 5).allowed, true);
  assert.throws(() => limiter.take('k', 11), (err: unknown) => err instanceof GatewayError && err.code === 'INTERNAL');
  assert.throws(() => limiter.take('k', 0), GatewayError);
});

test('refill restores service, but never beyond capacity', () => {
  const c = clock();
  const limiter = new RateLimiter({ capacity: 3, refillPerSec: 1, maxKeys: 10, now: c.now });
  for (let i = 0; i < 3; i++) limiter.take('k');
  assert.equal(limiter.take('k').allowed, false);
  c.advance(3_600_000);
  for (let i = 0; i < 3; i++) assert.equal(limiter.take('k').allowed, true, `request ${i + 1} after an hour idle`);
  assert.equal(limiter.take('k').allowed, false, 'an hour idle is worth a full bucket, not 3600 tokens');
});

test("one token's burst does not touch another token's budget", () => {
  // The acceptance of the issue at the limiter level: a burst from one token is held to its rate
  // while another token's builds keep going.
  const c = clock();
  const limiter = new RateLimiter({ capacity: 20, refillPerSec: 5, maxKeys: 1000, now: c.now });
  let burstAllowed = 0;
  let quietAllowed = 0;
  for (let tick = 0; tick < 100; tick++) {
    for (let i = 0; i < 50; i++) if (limiter.take('jti:noisy').allowed) burstAllowed++;
    // The quiet token builds at 2 requests a second, within its rate.
    if (tick % 5 === 0 && limiter.take('jti:quiet').allowed) quietAllowed++;
    c.advance(100);
  }
  assert.equal(quietAllowed, 20, 'every request of the quiet token went through');
  // The burst of 20, then 5 a second over the 9.9 s to the last tick: its rate, no more and no less.
  assert.equal(burstAllowed, 20 + 49);
});

test('memory stays bounded under 100k distinct keys, and eviction never grants more than a fresh bucket', () => {
  const c = clock();
  const limiter = new RateLimiter({ capacity: 3, refillPerSec: 1, maxKeys: 1000, now: c.now });
  for (let i = 0; i < 3; i++) limiter.take('victim-of-own-flood');
  for (let i = 0; i < 100_000; i++) {
    limiter.take(`k${i}`);
    assert.ok(limiter.size <= 1000);
  }
  assert.equal(limiter.size, 1000);
  assert.equal(limiter.evictedInDebt, 100_000 - 1000 + 1, 'every key forgotten was in debt, and each was counted');
  // The flooded-out key comes back with a fresh bucket: capacity, and not one more.
  let allowed = 0;
  for (let i = 0; i < 10; i++) if (limiter.take('victim-of-own-flood').allowed) allowed++;
  assert.equal(allowed, 3);
});

test('a key that keeps knocking stays remembered while fresh keys push out idle ones', () => {
  const c = clock();
  const limiter = new RateLimiter({ capacity: 1, refillPerSec: 0.001, maxKeys: 3, now: c.now });
  limiter.take('attacker');
  for (let i = 0; i < 100; i++) {
    limiter.take(`other${i}`);
    assert.equal(limiter.take('attacker').allowed, false, `attempt ${i}: its debt was not forgotten`);
  }
});

test('keys whose buckets have refilled are dropped without counting as lossy', () => {
  const c = clock();
  const limiter = new RateLimiter({ capacity: 1, refillPerSec: 10, maxKeys: 2, now: c.now });
  limiter.take('a');
  limiter.take('b');
  c.advance(100);
  limiter.take('c');
  limiter.take('d');
  assert.equal(limiter.evictedInDebt, 0);
  assert.equal(limiter.size, 2);
});

test('refund gives back what was taken and never more than a full bucket', () => {
  const c = clock();
  const limiter = new RateLimiter({ capacity: 2, refillPerSec: 1, maxKeys: 10, now: c.now });
  limiter.take('k');
  limiter.take('k');
  limiter.refund('k');
  assert.equal(limiter.take('k').allowed, true);
  assert.equal(limiter.take('k').allowed, false);
  limiter.refund('k');
  limiter.refund('k');
  limiter.refund('k');
  limiter.refund('never-seen');
  assert.equal(limiter.take('k').allowed, true);
  assert.equal(limiter.take('k').allowed, true);
  assert.equal(limiter.take('k').allowed, false, 'three refunds of two taken still make only a full bucket');
});

test('options are checked', () => {
  assert.throws(
    () => new RateLimiter({ capacity: 0, refillPerSec: -1, maxKeys: 1.5 }),
    (err: unknown) => err instanceof GatewayError && err.code === 'CONFIG_INVALID' && /capacity/.test(err.message) && /refillPerSec/.test(err.message) && /maxKeys/.test(err.message),
  );
});

const specs = {
  authPerAddress: { description: 'authentication attempts per source address', capacity: 3, refillPerSec: 0.5, maxKeys: 100 },
  opensPerToken: { description: 'tunnel stream opens per token', capacity: 2, refillPerSec: 10, maxKeys: 100 },
};

test('RateLimits refuses with RATE_LIMITED naming the limit, its figures and when to retry, never the key', () => {
  const c = clock();
  const limits = new RateLimits(specs, { now: c.now });
  const charges = [
    { limit: 'authPerAddress' as const, key: '203.0.113.7' },
    { limit: 'opensPerToken' as const, key: 'jti:0f1e2d3c-secret-looking' },
  ];
  assert.deepEqual(limits.take(charges), { allowed: true });
  assert.deepEqual(limits.take(charges), { allowed: true });
  const refused = limits.take(charges);
  assert.equal(refused.allowed, false);
  if (refused.allowed) return;
  assert.equal(refused.limit, 'opensPerToken');
  assert.equal(refused.retryAfterMs, 100);
  assert.ok(refused.error instanceof GatewayError);
  assert.equal(refused.error.code, 'RATE_LIMITED');
  assert.equal(
    refused.error.message,
    "rate limit 'opensPerToken' exceeded: tunnel stream opens per token, burst 2, refill 10 per second; retry after 100 ms",
  );
  assert.doesNotMatch(refused.error.message, /0f1e2d3c|203\.0\.113/);
  c.advance(100);
  assert.deepEqual(limits.take(charges), { allowed: true }, 'the refused request took nothing from the address');
  c.advance(100);
  const byAddress = limits.take(charges);
  assert.equal(byAddress.allowed, false);
  if (byAddress.allowed) return;
  assert.equal(byAddress.limit, 'authPerAddress');
  assert.match(byAddress.error.message, /^rate limit 'authPerAddress' exceeded: authentication attempts per source address, burst 3, refill 1 every 2 s; retry after 1800 ms$/);
});

test('RATE_LIMITED crosses the wire as 429 and WebSocket close 4429', () => {
  assert.equal(wireCodeOf('RATE_LIMITED'), 'RATE_LIMITED');
  assert.equal(WireErrorHttpStatus.RATE_LIMITED, 429);
  assert.equal(WsCloseCode.RATE_LIMITED, 4429);
});

test('RateLimits charges all limits or none', () => {
  const c = clock();
  const limits = new RateLimits(specs, { now: c.now });
  // Exhaust one token's opens; requests from the same address with that token are refused and
  // must not eat the address's budget, which other tokens behind the same NAT share.
  limits.take([{ limit: 'opensPerToken', key: 'jti:a' }, { limit: 'opensPerToken', key: 'jti:a' }]);
  for (let i = 0; i < 10; i++) {
    assert.equal(limits.take([{ limit: 'authPerAddress', key: '198.51.100.1' }, { limit: 'opensPerToken', key: 'jti:a' }]).allowed, false);
  }
  for (let i = 0; i < 3; i++) {
    assert.equal(limits.take([{ limit: 'authPerAddress', key: '198.51.100.1' }, { limit: 'opensPerToken', key: `jti:other${i}` }]).allowed, true, `other token ${i}`);
  }
  assert.equal(limits.take([{ limit: 'authPerAddress', key: '198.51.100.1' }]).allowed, false, 'the address budget was exactly 3');
  assert.equal(limits.limiter('authPerAddress').size, 1);
});

test('address keys: IPv4 as is, IPv6 by /64, IPv4-mapped IPv6 as IPv4', () => {
  assert.equal(addressKey('203.0.113.7'), '203.0.113.7');
  assert.equal(addressKey('::ffff:203.0.113.7'), '203.0.113.7');
  assert.equal(addressKey('::FFFF:cb00:7107'), '203.0.113.7', 'the hex spelling of a mapped address');
  assert.equal(addressKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:0DB8:0001:0002::1'), '2001:db8:1:2::/64', 'case and leading zeros do not matter');
  assert.equal(addressKey('2001:db8:1:3::1'), '2001:db8:1:3::/64', 'the next /64 is another key');
  assert.equal(addressKey('2001:db8::'), '2001:db8:0:0::/64');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
  assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(addressKey('[2001:db8:1:2::9]'), '2001:db8:1:2::/64');
  assert.equal(addressKey('64:ff9b::192.0.2.33'), '64:ff9b:0:0::/64', 'NAT64 is a v6 prefix, not a mapped address');
  assert.equal(addressKey(undefined), 'unknown');
  assert.equal(addressKey('not an address'), 'unknown');
  assert.equal(addressKey(''), 'unknown');
});

test('every address of one /64 shares one bucket', () => {
  const c = clock();
  const limiter = new RateLimiter({ capacity: 5, refillPerSec: 1, maxKeys: 100, now: c.now });
  let allowed = 0;
  for (let i = 0; i < 1000; i++) {
    const host = `2001:db8:aa:bb:${(i >> 12).toString(16)}:${(i & 0xfff).toString(16)}:${i.toString(16)}:1`;
    if (limiter.take(addressKey(host)).allowed) allowed++;
  }
  assert.equal(allowed, 5, 'a host rotating through its /64 gets one bucket');
  assert.equal(limiter.take(addressKey('2001:db8:aa:bc::1')).allowed, true, 'a neighbouring /64 has its own');
  assert.equal(limiter.take(addressKey('203.0.113.9')).allowed, true);
  for (let i = 0; i < 4; i++) limiter.take(addressKey('::ffff:203.0.113.9'));
  assert.equal(limiter.take(addressKey('203.0.113.9')).allowed, false, 'mapped and plain IPv4 are one client');
});
