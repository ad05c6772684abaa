// The placement simulations on hand-made traces whose outcome can be worked out on paper: the
// Slipway one through the real MemoryRoutingTable, the shared-builder one with its cache model,
// and the clairvoyant ceiling.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomChooser, ringChooser } from '../src/builderChoosers.js';
import { VIRTUAL_EPOCH_MS, type BuildTrace } from '../src/buildTrace.js';
import { optimalCacheBound } from '../src/optimalCacheBound.js';
import { SeededRandom } from '../src/seededRandom.js';
import { simulateSharedBuilders } from '../src/sharedBuilderSimulation.js';
import { simulateSlipway, type SlipwaySimulationOptions } from '../src/slipwaySimulation.js';

const MIN = 60_000;

/** Builds as [arrival minute, project rank, duration minutes]; everything is measured. */
function trace(builds: Array<[number, number, number]>, retentionMin = 30): BuildTrace {
  const count = builds.length;
  const repeat = new Uint8Array(count);
  const last = new Map<number, number>();
  builds.forEach(([at, p], i) => {
    const prev = last.get(p);
    repeat[i] = prev !== undefined && (at - prev) * MIN < retentionMin * MIN ? 1 : 0;
    last.set(p, at);
  });
  const end = Math.max(...builds.map(([at]) => at)) + 1;
  return {
    params: {
      seed: 0, projects: 10, zipfExponent: 1, buildsPerMinute: 1, warmupMs: 0, measureMs: end * MIN,
      durationMedianMs: MIN, durationSigma: 0, durationMaxMs: 60 * MIN, retentionMs: retentionMin * MIN,
    },
    count,
    arrivalMs: Float64Array.from(builds, ([at]) => VIRTUAL_EPOCH_MS + at * MIN),
    project: Int32Array.from(builds, ([, p]) => p),
    durationMs: Float64Array.from(builds, ([, , d]) => d * MIN),
    measured: new Uint8Array(count).fill(1),
    repeat,
    warmupEndMs: VIRTUAL_EPOCH_MS,
    endMs: VIRTUAL_EPOCH_MS + end * MIN,
  };
}

function slipway(over: Partial<SlipwaySimulationOptions>): SlipwaySimulationOptions {
  return {
    name: 'slipway', builders: 2, capacity: 1, platform: 'linux/amd64', spillAfterMs: 30_000,
    idleRetentionMs: 30 * MIN, reclaimIntervalMs: MIN, evictOnDemand: false, drainLimitMs: 24 * 60 * MIN, ...over,
  };
}

describe('Slipway simulation (MemoryRoutingTable on a virtual clock)', () => {
  it('puts a project back on its own builder and a new project on the pool', async () => {
    const { summary } = await simulateSlipway(trace([[0, 1, 10], [20, 1, 5], [21, 2, 5], [40, 1, 5]]), slipway({}));
    assert.equal(summary.placed, 4);
    assert.equal(summary.repeatBuilds, 2);
    assert.equal(summary.warmRepeat, 2);
    assert.equal(summary.firstBuilds, 2);
    assert.equal(summary.warmFirst, 0);
    assert.equal(summary.spills, 0);
    assert.equal(summary.waitMaxMs, 0);
  });

  it('spills a build whose builder is busy after spillAfterMs, cold', async () => {
    const { summary } = await simulateSlipway(trace([[0, 1, 10], [1, 1, 5]]), slipway({}));
    assert.equal(summary.spills, 1);
    assert.equal(summary.warmRepeat, 0, 'the spilled repeat build landed cold');
    assert.equal(summary.waitMaxMs, 30_000);
  });

  it('makes a new project wait for idle reclamation when the pool is empty, then places it cold', async () => {
    // One builder: project 1 holds it from minute 0 to 5, then idle; the fleet's tick at minute 35 sees it idle 30 min.
    const { summary } = await simulateSlipway(trace([[0, 1, 5], [10, 2, 5]]), slipway({ builders: 1 }));
    assert.equal(summary.placed, 2);
    assert.equal(summary.waitMaxMs, 25 * MIN);
    assert.equal(summary.warmFirst, 0);
  });

  it('with eviction on demand takes the idle builder at the next reclaim tick instead', async () => {
    const { summary } = await simulateSlipway(trace([[0, 1, 5], [10.5, 2, 5]]), slipway({ builders: 1, evictOnDemand: true }));
    assert.equal(summary.placed, 2);
    assert.equal(summary.waitMaxMs, 0.5 * MIN);
  });
});

describe('shared-builder simulation', () => {
  it('is warm only when the builder last built the project, and queues when all slots are busy', () => {
    const t = trace([[0, 1, 5], [10, 1, 5], [11, 2, 5], [20, 1, 5], [21, 3, 10], [22, 3, 5]]);
    const s = simulateSharedBuilders(t, randomChooser(new SeededRandom(1)), { builders: 1, capacity: 1, cacheProjects: 1 });
    // One builder: 1 cold (0-5); 1 warm (10-15); 2 queued 4 min, cold (15-20); 1 arrives as 2 ends and
    // queues behind nothing (20-25), cold; 3 waits 4 min (25-35), cold; the second 3 waits 13 min, warm.
    assert.equal(s.placed, 6);
    assert.equal(s.warmRepeat, 2);
    assert.equal(s.waitMaxMs, 13 * MIN);
    assert.equal(s.spills, undefined, 'random has no preferred builder');
  });

  it('counts a build off its ring builder as a spill', () => {
    const builders = ['b0', 'b1', 'b2', 'b3'];
    const t = trace([[0, 1, 10], [1, 1, 10]]);
    const s = simulateSharedBuilders(t, ringChooser(builders, 50), { builders: 4, capacity: 1, cacheProjects: 1 });
    assert.equal(s.spills, 1);
    assert.equal(s.warmRepeat, 0);
  });
});

describe('optimalCacheBound', () => {
  it('evicts the project needed furthest ahead, which LRU would not', () => {
    // a b c a with two caches: at c, b is never needed again, so a stays and its repeat is warm.
    const t = trace([[0, 1, 1], [1, 2, 1], [2, 3, 1], [3, 1, 1]]);
    assert.deepEqual(optimalCacheBound(t, 2), { repeatBuilds: 1, warmRepeat: 1, warmRatio: 1 });
    // One cache: c must evict a.
    assert.deepEqual(optimalCacheBound(t, 1), { repeatBuilds: 1, warmRepeat: 0, warmRatio: 0 });
  });
});
