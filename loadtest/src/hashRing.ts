import { createHash } from 'node:crypto';

// A consistent-hash ring of builders, the comparison placer of bench:placement: each builder
// owns `virtualNodes` points, a key belongs to the first point at or after its hash, and a key
// whose owner is full walks on round the ring. Removing a builder moves only the keys it owned;
// every other key keeps its builder (what the tests check).
export class HashRing {
  readonly builders: readonly string[];
  private readonly pointHash: Uint32Array;
  private readonly pointBuilder: Uint32Array;

  constructor(builders: readonly string[], virtualNodes: number) {
    if (builders.length === 0) throw new RangeError('a hash ring needs at least one builder');
    if (!Number.isInteger(virtualNodes) || virtualNodes < 1) throw new RangeError(`virtual nodes must be a positive integer, got ${virtualNodes}`);
    this.builders = [...builders];
    const points: Array<{ hash: number; builder: number }> = [];
    builders.forEach((id, builder) => {
      for (let v = 0; v < virtualNodes; v++) points.push({ hash: hash32(`${id}#${v}`), builder });
    });
    // Ties (two points on one hash) break by builder id, not by position in the list, so the
    // order of the others does not change when a builder leaves.
    points.sort((a, b) => a.hash - b.hash || compare(builders[a.builder]!, builders[b.builder]!));
    this.pointHash = Uint32Array.from(points, (p) => p.hash);
    this.pointBuilder = Uint32Array.from(points, (p) => p.builder);
  }

  /** Index (into `builders`) of the builder that owns the key. */
  home(key: string): number {
    return this.pointBuilder[this.firstPoint(hash32(key))]!;
  }

  /**
   * The first builder in ring order from the key's point that `accept` takes, or undefined when
   * none does. `keyHash` is hash32(key), which callers placing many builds of one key keep.
   */
  walk(keyHash: number, accept: (builder: number) => boolean): number | undefined {
    const n = this.pointHash.length;
    const start = this.firstPoint(keyHash);
    for (let i = 0; i < n; i++) {
      const builder = this.pointBuilder[(start + i) % n]!;
      if (accept(builder)) return builder;
    }
    return undefined;
  }

  private firstPoint(h: number): number {
    let lo = 0;
    let hi = this.pointHash.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.pointHash[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.pointHash.length ? 0 : lo;
  }
}

/** The ring's hash: the first 32 bits of MD5, for spread, not for security. */
export function hash32(key: string): number {
  return createHash('md5').update(key).digest().readUInt32BE(0);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
