import { performance } from 'node:perf_hooks';
import { randomChooser, ringChooser } from './builderChoosers.js';
import { distinctProjectsPerWindow, lognormalMean, makeTrace, offeredUtilisation } from './buildTrace.js';
import { optimalCacheBound } from './optimalCacheBound.js';
import type { PlacementConfig } from './placementConfig.js';
import { SLIPWAY, type SimulatedLoad } from './placementResults.js';
import { SeededRandom } from './seededRandom.js';
import { simulateSharedBuilders } from './sharedBuilderSimulation.js';
import { simulateSlipway } from './slipwaySimulation.js';

// Part 1 of bench:placement: for each load level, one trace from the seed and every placer on it.

const PLATFORM = 'linux/amd64';
export const SLIPWAY_EVICT = 'slipway+evict';

export async function runPlacementSimulation(config: PlacementConfig, progress: (line: string) => void): Promise<SimulatedLoad[]> {
  const loads: SimulatedLoad[] = [];
  const slots = config.builders * config.capacity;
  const meanBuildMinutes = lognormalMean(config.buildMedianMs, config.buildSigma) / 60_000;
  for (const utilisation of config.loads) {
    const started = performance.now();
    const buildsPerMinute = (utilisation * slots) / meanBuildMinutes;
    const trace = makeTrace({
      seed: config.seed,
      projects: config.projects,
      zipfExponent: config.zipfExponent,
      buildsPerMinute,
      warmupMs: config.warmupMs,
      measureMs: config.measureMs,
      durationMedianMs: config.buildMedianMs,
      durationSigma: config.buildSigma,
      durationMaxMs: config.buildMaxMs,
      retentionMs: config.idleRetentionMs,
    });
    const label = `load ${(utilisation * 100).toFixed(0)}%`;
    progress(`${label}: ${trace.count} builds; simulating slipway`);
    const common = {
      builders: config.builders,
      capacity: config.capacity,
      platform: PLATFORM,
      spillAfterMs: config.spillAfterMs,
      idleRetentionMs: config.idleRetentionMs,
      reclaimIntervalMs: config.reclaimIntervalMs,
      drainLimitMs: config.drainLimitMs,
    } as const;
    const slipway = await simulateSlipway(trace, { ...common, name: SLIPWAY, evictOnDemand: false });
    progress(`${label}: simulating slipway with eviction on demand`);
    const evict = await simulateSlipway(trace, { ...common, name: SLIPWAY_EVICT, evictOnDemand: true });
    progress(`${label}: simulating random and consistent-hash placers`);
    const shared = { builders: config.builders, capacity: config.capacity, cacheProjects: config.cacheProjects };
    const random = simulateSharedBuilders(trace, randomChooser(new SeededRandom(config.seed).fork(4)), shared);
    const builderIds = Array.from({ length: config.builders }, (_, i) => `builder-${String(i).padStart(3, '0')}`);
    const hash = simulateSharedBuilders(trace, ringChooser(builderIds, config.ringVirtualNodes), shared);
    let measuredBuilds = 0;
    let repeatBuilds = 0;
    for (let i = 0; i < trace.count; i++) {
      if (!trace.measured[i]) continue;
      measuredBuilds++;
      if (trace.repeat[i]) repeatBuilds++;
    }
    loads.push({
      utilisationTarget: utilisation,
      offeredUtilisation: offeredUtilisation(trace, slots),
      buildsPerMinute,
      traceBuilds: trace.count,
      measuredBuilds,
      repeatBuilds,
      distinctProjectsPerWindow: distinctProjectsPerWindow(trace),
      ceiling: optimalCacheBound(trace, config.builders),
      placers: [slipway.summary, evict.summary, random, hash],
      bindingsReleased: { [SLIPWAY]: slipway.bindingsReleased, [SLIPWAY_EVICT]: evict.bindingsReleased },
      simulationSeconds: (performance.now() - started) / 1000,
    });
  }
  return loads;
}
