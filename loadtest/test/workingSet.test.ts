// The working-set rate on cases worked out on paper, and on a drawn trace.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { distinctProjectsPerWindow, makeTrace } from '../src/buildTrace.js';
import { buildsPerMinuteForDistinctProjects, expectedDistinctProjects } from '../src/workingSet.js';
import { ZipfSampler } from '../src/zipfSampler.js';

const MIN = 60_000;

describe('working set', () => {
  it('with equally popular projects, n (1 - e^(-r W / n)) distinct ones build per window', () => {
    const zipf = new ZipfSampler(10, 0);
    // 10 builds per 10-minute window over 10 projects: each is missed with probability e^-1.
    assert.ok(Math.abs(expectedDistinctProjects(zipf, 1, 10 * MIN) - 10 * (1 - Math.exp(-1))) < 1e-9);
    const rate = buildsPerMinuteForDistinctProjects(zipf, 5, 10 * MIN);
    // 5 = 10 (1 - e^(-10 r / 10)) => r = ln 2.
    assert.ok(Math.abs(rate - Math.LN2) < 1e-9, `rate ${rate}`);
  });

  it('refuses a working set it cannot reach', () => {
    const zipf = new ZipfSampler(100, 1.1);
    assert.throws(() => buildsPerMinuteForDistinctProjects(zipf, 100, 30 * MIN), RangeError);
    assert.throws(() => buildsPerMinuteForDistinctProjects(zipf, 0, 30 * MIN), RangeError);
  });

  it('gives a trace whose measured distinct projects per window are near the target', () => {
    const zipf = new ZipfSampler(10_000, 1.1);
    const rate = buildsPerMinuteForDistinctProjects(zipf, 120, 30 * MIN);
    const trace = makeTrace({
      seed: 7, projects: 10_000, zipfExponent: 1.1, buildsPerMinute: rate, warmupMs: 0, measureMs: 20 * 30 * MIN,
      durationMedianMs: 3 * MIN, durationSigma: 0.6, durationMaxMs: 60 * MIN, retentionMs: 30 * MIN,
    });
    const measured = distinctProjectsPerWindow(trace);
    // The mean over 20 windows; a window's count varies by about its square root (~11).
    assert.ok(Math.abs(measured - 120) < 12, `measured ${measured} distinct projects per window for a target of 120`);
  });
});
