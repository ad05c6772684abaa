import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeededRandom } from '../src/seededRandom.js';
import { ZipfSampler } from '../src/zipfSampler.js';

describe('ZipfSampler', () => {
  it('gives rank k a probability proportional to k^-s that sums to 1', () => {
    const z = new ZipfSampler(1000, 1.1);
    let sum = 0;
    for (let k = 1; k <= 1000; k++) sum += z.probability(k);
    assert.ok(Math.abs(sum - 1) < 1e-9, `probabilities sum to ${sum}`);
    assert.ok(Math.abs(z.probability(1) / z.probability(2) - 2 ** 1.1) < 1e-9);
    assert.ok(Math.abs(z.probability(10) / z.probability(100) - 10 ** 1.1) < 1e-6);
    assert.equal(z.probability(0), 0);
    assert.equal(z.probability(1001), 0);
  });

  it('samples ranks with the frequencies it promises', () => {
    const n = 1000;
    const draws = 200_000;
    const z = new ZipfSampler(n, 1.1);
    const rng = new SeededRandom(42);
    const counts = new Int32Array(n + 1);
    for (let i = 0; i < draws; i++) {
      const k = z.sample(rng);
      assert.ok(Number.isInteger(k) && k >= 1 && k <= n, `rank ${k} out of range`);
      counts[k]!++;
    }
    // The most popular ranks: each count within 5 standard deviations of its binomial mean.
    for (let k = 1; k <= 20; k++) {
      const p = z.probability(k);
      const mean = draws * p;
      const sd = Math.sqrt(draws * p * (1 - p));
      assert.ok(Math.abs(counts[k]! - mean) < 5 * sd, `rank ${k}: ${counts[k]} draws, expected ${mean.toFixed(0)} ± ${(5 * sd).toFixed(0)}`);
    }
    // The whole distribution: Kolmogorov-Smirnov distance well under the 0.1% critical value (1.95/sqrt(draws) = 0.0044).
    let empirical = 0;
    let theoretical = 0;
    let worst = 0;
    for (let k = 1; k <= n; k++) {
      empirical += counts[k]! / draws;
      theoretical += z.probability(k);
      worst = Math.max(worst, Math.abs(empirical - theoretical));
    }
    assert.ok(worst < 0.0044, `KS distance ${worst}`);
  });

  it('repeats a sequence from the same seed and not from another', () => {
    const z = new ZipfSampler(10_000, 1.1);
    const run = (seed: number): number[] => {
      const rng = new SeededRandom(seed);
      return Array.from({ length: 50 }, () => z.sample(rng));
    };
    assert.deepEqual(run(7), run(7));
    assert.notDeepEqual(run(7), run(8));
  });

  it('refuses nonsense parameters', () => {
    assert.throws(() => new ZipfSampler(0, 1.1), RangeError);
    assert.throws(() => new ZipfSampler(10, -1), RangeError);
  });
});

describe('SeededRandom', () => {
  it('draws uniforms in [0, 1) with mean 1/2 and exponentials with the mean asked for', () => {
    const rng = new SeededRandom(1);
    let sum = 0;
    let expSum = 0;
    for (let i = 0; i < 100_000; i++) {
      const u = rng.next();
      assert.ok(u >= 0 && u < 1);
      sum += u;
      expSum += rng.exponential(3);
    }
    assert.ok(Math.abs(sum / 100_000 - 0.5) < 0.005, `uniform mean ${sum / 100_000}`);
    assert.ok(Math.abs(expSum / 100_000 - 3) < 0.05, `exponential mean ${expSum / 100_000}`);
  });

  it('draws lognormals around the median asked for', () => {
    const rng = new SeededRandom(2);
    const xs = Array.from({ length: 20_001 }, () => rng.lognormal(180, 0.6)).sort((a, b) => a - b);
    const median = xs[10_000]!;
    assert.ok(Math.abs(median - 180) < 5, `median ${median}`);
  });
});
