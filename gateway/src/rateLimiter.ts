import { isIPv4, isIPv6 } from 'node:net';
import { GatewayError } from './gatewayError.js';

export interface RateLimiterOptions {
  /** The largest burst: what a key that has been idle long enough may spend at once. */
  capacity: number;
  /** The sustained rate: tokens given back per second. */
  refillPerSec: number;
  /** Keys remembered at most. Keys are attacker-chosen (addresses, token ids), so memory must not grow with them. */
  maxKeys: number;
  /** Milliseconds on a clock that never goes back; tests drive it. Default `performance.now()`. */
  now?: () => number;
}

export type RateDecision = { allowed: true } | { allowed: false; retryAfterMs: number };

// Floating point makes "exactly enough tokens" come out a hair short (a refill of 3/s is 333.33...
// ms per token). Treating a sub-nanosecond shortfall as enough keeps the retry hint honest: a
// caller that waits retryAfterMs is admitted, and nothing measurable is given away.
const TOLERANCE_MS = 1e-6;

// A token bucket per key, kept as one number: the time at which the key's bucket will be full
// again (the generic cell rate algorithm). A key that has no entry, or whose time has passed, has
// a full bucket, so forgetting a key can at most hand it a fresh bucket, never more; and a key
// that stays within its rate costs memory only while it is in debt.
export class RateLimiter {
  readonly capacity: number;
  readonly refillPerSec: number;
  readonly maxKeys: number;
  readonly #msPerToken: number;
  readonly #burstMs: number;
  readonly #now: () => number;
  // Insertion order is recency order (every use re-inserts), so the first key is the least recently used.
  readonly #fullAt = new Map<string, number>();
  #evictedInDebt = 0;

  constructor(options: RateLimiterOptions) {
    const problems: string[] = [];
    if (!(Number.isFinite(options.capacity) && options.capacity >= 1)) problems.push(`capacity must be a number >= 1, got ${options.capacity}`);
    if (!(Number.isFinite(options.refillPerSec) && options.refillPerSec > 0)) problems.push(`refillPerSec must be a number > 0, got ${options.refillPerSec}`);
    if (!(Number.isSafeInteger(options.maxKeys) && options.maxKeys >= 1)) problems.push(`maxKeys must be an integer >= 1, got ${options.maxKeys}`);
    if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `rate limiter: ${problems.join('; ')}`);
    this.capacity = options.capacity;
    this.refillPerSec = options.refillPerSec;
    this.maxKeys = options.maxKeys;
    this.#msPerToken = 1000 / options.refillPerSec;
    this.#burstMs = options.capacity * this.#msPerToken;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Spends `cost` tokens of `key`'s bucket, or says how long until it could. A refusal spends nothing. */
  take(key: string, cost = 1): RateDecision {
    this.#checkCost(cost);
    const now = this.#now();
    const fullAt = this.#fullAt.get(key);
    const owedMs = fullAt === undefined ? 0 : Math.max(0, fullAt - now);
    const afterMs = owedMs + cost * this.#msPerToken;
    const excessMs = afterMs - this.#burstMs;
    if (excessMs > TOLERANCE_MS) {
      // A key that keeps knocking stays most recently used, so a flood of other keys has to be at
      // least maxKeys long between two of its attempts to push its debt out.
      if (fullAt !== undefined) this.#remember(key, fullAt, now);
      return { allowed: false, retryAfterMs: Math.ceil(excessMs - TOLERANCE_MS) };
    }
    this.#remember(key, now + afterMs, now);
    return { allowed: true };
  }

  /** Gives back tokens taken for work that turned out not to count. Never fills a bucket past full. */
  refund(key: string, cost = 1): void {
    this.#checkCost(cost);
    const fullAt = this.#fullAt.get(key);
    if (fullAt === undefined) return;
    const next = fullAt - cost * this.#msPerToken;
    if (next <= this.#now()) this.#fullAt.delete(key);
    else this.#fullAt.set(key, next);
  }

  /** Keys currently remembered (at most maxKeys). */
  get size(): number {
    return this.#fullAt.size;
  }

  /**
   * Keys forgotten to make room while their buckets were not yet full: each of them could spend up
   * to a fresh bucket sooner than its rate allows. Worth a metric: steady growth means maxKeys is
   * too small for the traffic, or someone is cycling through keys.
   */
  get evictedInDebt(): number {
    return this.#evictedInDebt;
  }

  #remember(key: string, fullAt: number, now: number): void {
    if (this.#fullAt.delete(key)) {
      this.#fullAt.set(key, fullAt);
      return;
    }
    if (this.#fullAt.size >= this.maxKeys) {
      const [oldest, oldestFullAt] = this.#fullAt.entries().next().value as [string, number];
      if (oldestFullAt > now) this.#evictedInDebt++;
      this.#fullAt.delete(oldest);
    }
    this.#fullAt.set(key, fullAt);
  }

  #checkCost(cost: number): void {
    // A cost above the capacity could never be paid: refusing it forever would hide the bug.
    if (!(Number.isFinite(cost) && cost > 0 && cost <= this.capacity)) {
      throw new GatewayError('INTERNAL', `rate limiter cost must be > 0 and at most the capacity ${this.capacity}, got ${cost}`);
    }
  }
}

export interface RateLimitSpec extends Omit<RateLimiterOptions, 'now'> {
  /** What is counted, for the refusal message: "authentication attempts per source address". */
  description: string;
}

export interface RateCharge<Name extends string> {
  limit: Name;
  key: string;
  cost?: number;
}

export type RateLimitsDecision<Name extends string> =
  | { allowed: true }
  | { allowed: false; limit: Name; retryAfterMs: number; error: GatewayError };

// One request usually counts against several limits at once (its source address, its token). It
// is admitted by all of them or charged to none: a request refused for its token must not also
// drain the bucket of an address that other clients behind the same NAT share.
export class RateLimits<Name extends string> {
  readonly #limits = new Map<Name, { spec: RateLimitSpec; limiter: RateLimiter }>();

  constructor(specs: Readonly<Record<Name, RateLimitSpec>>, options: { now?: () => number } = {}) {
    for (const name of Object.keys(specs) as Name[]) {
      const spec = specs[name];
      this.#limits.set(name, { spec, limiter: new RateLimiter({ ...spec, ...(options.now ? { now: options.now } : {}) }) });
    }
  }

  /** Charges every limit in order; the first one that refuses decides, and nothing is charged. */
  take(charges: readonly RateCharge<Name>[]): RateLimitsDecision<Name> {
    const taken: Array<{ limiter: RateLimiter; key: string; cost: number }> = [];
    for (const charge of charges) {
      const { spec, limiter } = this.#entry(charge.limit);
      const cost = charge.cost ?? 1;
      const decision = limiter.take(charge.key, cost);
      if (!decision.allowed) {
        for (const t of taken.reverse()) t.limiter.refund(t.key, t.cost);
        return { allowed: false, limit: charge.limit, retryAfterMs: decision.retryAfterMs, error: refusal(charge.limit, spec, decision.retryAfterMs) };
      }
      taken.push({ limiter, key: charge.key, cost });
    }
    return { allowed: true };
  }

  /** The limiter behind one limit, for metrics (size, evictedInDebt). */
  limiter(name: Name): RateLimiter {
    return this.#entry(name).limiter;
  }

  #entry(name: Name): { spec: RateLimitSpec; limiter: RateLimiter } {
    const entry = this.#limits.get(name);
    if (!entry) throw new GatewayError('INTERNAL', `no rate limit named '${name}'`);
    return entry;
  }
}

// Names the limit and its figures so an operator can tell which one to raise, and says when to
// come back. It never names the key: that is the caller's own address or token id, which it knows.
function refusal(name: string, spec: RateLimitSpec, retryAfterMs: number): GatewayError {
  return new GatewayError(
    'RATE_LIMITED',
    `rate limit '${name}' exceeded: ${spec.description}, burst ${round(spec.capacity)}, refill ${rate(spec.refillPerSec)}; retry after ${retryAfterMs} ms`,
  );
}

function rate(perSec: number): string {
  return perSec >= 1 ? `${round(perSec)} per second` : `1 every ${round(1 / perSec)} s`;
}

function round(n: number): string {
  return String(Number(n.toPrecision(4)));
}

const IPV6_GROUP_KEY_SUFFIX = '::/64';

/**
 * The key a source address is rate limited by. IPv4 addresses stand for themselves. An IPv6 host
 * is usually given a whole /64 and can pick any address in it, so IPv6 addresses are grouped by
 * their /64. IPv4-mapped IPv6 (what a dual-stack socket reports for an IPv4 peer) counts as the
 * IPv4 address. Anything else (a socket that closed before its address was read) shares one key,
 * so malformed input cannot mint fresh buckets.
 */
export function addressKey(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  let bare = address.trim();
  if (bare.startsWith('[') && bare.endsWith(']')) bare = bare.slice(1, -1);
  // A zone index (fe80::1%eth0) names the local interface, not the peer.
  const zone = bare.indexOf('%');
  if (zone >= 0) bare = bare.slice(0, zone);
  if (isIPv4(bare)) return bare;
  if (!isIPv6(bare)) return 'unknown';
  const groups = ipv6Groups(bare);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6] ?? 0;
    const lo = groups[7] ?? 0;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}${IPV6_GROUP_KEY_SUFFIX}`;
}

// The eight 16-bit groups of an address that isIPv6 has already accepted.
function ipv6Groups(text: string): number[] {
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a = 0, b = 0, c = 0, d = 0] = piece.split('.').map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const gap = text.indexOf('::');
  if (gap < 0) return parse(text);
  const head = parse(text.slice(0, gap));
  const tail = parse(text.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}
