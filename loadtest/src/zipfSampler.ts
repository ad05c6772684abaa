import type { SeededRandom } from './seededRandom.js';

// Project popularity: rank k of n is drawn with probability proportional to k^-exponent. Exact
// inverse-CDF sampling (a binary search in the cumulative table) rather than a rejection method:
// n is at most a few hundred thousand, the table costs 8 bytes a rank, and the tests can compare
// the sampled frequencies with probability() directly.
export class ZipfSampler {
  readonly n: number;
  readonly exponent: number;
  private readonly cdf: Float64Array;

  constructor(n: number, exponent: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`Zipf needs a positive integer number of ranks, got ${n}`);
    if (!Number.isFinite(exponent) || exponent < 0) throw new RangeError(`Zipf needs an exponent >= 0, got ${exponent}`);
    this.n = n;
    this.exponent = exponent;
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 1; k <= n; k++) {
      sum += k ** -exponent;
      this.cdf[k - 1] = sum;
    }
    for (let i = 0; i < n; i++) this.cdf[i]! /= sum;
    // Rounding may leave the last entry a hair under 1; a draw must never fall past it.
    this.cdf[n - 1] = 1;
  }

  /** Probability of rank k (1-based). */
  probability(k: number): number {
    if (k < 1 || k > this.n) return 0;
    return this.cdf[k - 1]! - (k === 1 ? 0 : this.cdf[k - 2]!);
  }

  /** A rank from 1 (most popular) to n. */
  sample(rng: SeededRandom): number {
    const u = rng.next();
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cdf[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    return lo + 1;
  }
}
