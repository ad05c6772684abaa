import { performance } from 'node:perf_hooks';
import { randomChooser, ringChooser } from './builderChoosers.js';
import { distinctProjectsPerWindow, lognormalMean, makeTrace, offeredUtilisation } from './buildTrace.js';
import { optimalCacheBound } from './optimalCacheBound.js';
import type { PlacementConfig } from './placementConfig.js';
import { SLIPWAY, type SimulatedLoad } from './placementResults.js';
import { SeededRandom } from './seededRandom.js';
import { simulateSharedBuilders } from './sharedBuilderSimulation.js';
import { simulateSlipway } from './slipwaySimulation.js';
import { buildsPerMinuteForDistinctProjects } from './workingSet.js';
import { ZipfSampler } from './zipfSampler.js';

// Part 1 of bench:placement: for each load level, one trace from the seed and every placer on it.
// The levels: the working-set load (its arrival rate chosen so that few enough projects build per
// retention window for each to keep a builder), then each offered slot utilisation of --loads.

const PLATFORM = 'linux/amd64';
export const SLIPWAY_EVICT = 'slipway+evict';

interface LoadLevel {
  label: string;
  buildsPerMinute: number;
  utilisationTarget: number;
  workingSet: SimulatedLoad['workingSet'];
}

function loadLevels(config: PlacementConfig): LoadLevel[] {
  const slots = config.builders * config.capacity;
  const meanBuildMinutes = lognormalMean(config.buildMedianMs, config.buildSigma) / 60_000;
  const levels: LoadLevel[] = [];
  if (config.workingSetShare > 0) {
    const projectsPerWindow = config.workingSetShare * config.builders;
    const zipf = new ZipfSampler(config.projects, config.zipfExponent);
    const buildsPerMinute = buildsPerMinuteForDistinctProjects(zipf, projectsPerWindow, config.idleRetentionMs);
    levels.push({
      label: `ws ${(config.workingSetShare * 100).toFixed(0)}%`,
      buildsPerMinute,
      utilisationTarget: (buildsPerMinute * meanBuildMinutes) / slots,
      workingSet: { share: config.workingSetShare, targetProjectsPerWindow: projectsPerWindow },
    });
  }
  for (const utilisation of config.loads) {
    levels.push({
      label: `${(utilisation * 100).toFixed(0)}%`,
      buildsPerMinute: (utilisation * slots) / meanBuildMinutes,
      utilisationTarget: utilisation,
      workingSet: undefined,
    });
  }
  return levels;
}

export async function runPlacementSimulation(config: PlacementConfig, progress: (line: string) => void): Promise<SimulatedLoad[]> {
  const loads: SimulatedLoad[] = [];
  const slots = config.builders * config.capacity;
  for (const level of loadLevels(config)) {
    const started = performance.now();
    const { buildsPerMinute } = level;
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
    const label = `load ${level.label}`;
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
      label: level.label,
      workingSet: level.workingSet,
      utilisationTarget: level.utilisationTarget,
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
