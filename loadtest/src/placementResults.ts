import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BenchResults } from './benchResults.js';
import type { CacheBound } from './optimalCacheBound.js';
import type { PlacementConfig } from './placementConfig.js';
import type { LoadRunResult } from './placementLoad.js';
import type { PlacerSummary } from './placementTally.js';

// What bench:placement found, as written to loadtest/results/placement-<time>.json, and the
// verdict on each target of the issue. The verdict rules are here, in one place, and printed
// with the verdicts, so a reader can see what "met" was taken to mean.

export const PLACEMENT_RESULTS_SCHEMA = 'slipway-bench-placement/1';
export const WARM_TARGET = 0.95;
export const LATENCY_TARGET_P99_MS = 5;

export interface SimulatedLoad {
  /** Offered slot utilisation asked for (0.5 = 50%). */
  utilisationTarget: number;
  /** Offered slot utilisation of the measured builds of the trace actually drawn. */
  offeredUtilisation: number;
  buildsPerMinute: number;
  traceBuilds: number;
  measuredBuilds: number;
  repeatBuilds: number;
  /** Mean distinct projects building in one retention window: builders one-project bindings need. */
  distinctProjectsPerWindow: number;
  /** Best warm ratio any placer with one project per builder could reach on this trace. */
  ceiling: CacheBound;
  placers: PlacerSummary[];
  /** Bindings released by the simulated fleet during measurement, per Slipway variant. */
  bindingsReleased: Record<string, number>;
  simulationSeconds: number;
}

export interface RedisRun {
  label: string;
  coldShare: number;
  result: LoadRunResult;
  redisCpuSeconds: number | undefined;
  clientCpuSeconds: number;
}

export interface Verdict {
  target: string;
  met: boolean;
  detail: string;
}

export interface PlacementResults {
  schema: typeof PLACEMENT_RESULTS_SCHEMA;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  environment: BenchResults['environment'] & { loadAverageAtStart: number[]; loadAverageAtEnd: number[] };
  config: Omit<PlacementConfig, 'childBaseEnv' | 'resultsDir' | 'verbose'>;
  simulation: SimulatedLoad[] | undefined;
  redis: { version: string | undefined; runs: RedisRun[] } | undefined;
  verdicts: Verdict[];
}

export const SLIPWAY = 'slipway';

/**
 * Warm hits: Slipway's ratio at the lightest load simulated, counted as met only when that load
 * is one where capacity sufficed, i.e. builds did not queue beyond what the policy itself allows
 * (p99 wait within spillAfterMs) and every measured build was placed. A ratio bought by leaving
 * builds queued for their builder is not the target.
 */
export function warmVerdict(loads: readonly SimulatedLoad[], spillAfterMs: number, fmtWait: (ms: number) => string): Verdict | undefined {
  const light = [...loads].sort((a, b) => a.utilisationTarget - b.utilisationTarget)[0];
  const s = light?.placers.find((p) => p.placer === SLIPWAY);
  if (light === undefined || s === undefined) return undefined;
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const ratioOk = s.warmRatio >= WARM_TARGET;
  const sufficed = s.unplaced === 0 && s.waitP99Ms <= spillAfterMs;
  const target = `>= ${pct(WARM_TARGET)} warm hits when capacity suffices (Slipway, ${pct(light.utilisationTarget)} offered load)`;
  const figures =
    `${pct(s.warmRatio)} of ${s.repeatBuilds} repeat builds warm; queue wait p50 ${fmtWait(s.waitP50Ms)}, p99 ${fmtWait(s.waitP99Ms)}` +
    (s.unplaced > 0 ? `, ${s.unplaced} never placed` : '');
  let why: string;
  if (ratioOk && sufficed) why = '';
  else if (!sufficed)
    why =
      ` - the ratio was bought by queueing: ${light.distinctProjectsPerWindow.toFixed(0)} projects build per retention window, ` +
      `each holding a builder of its own for that long, and there are not that many builders, so capacity did not suffice ` +
      `(wait p99 above the ${fmtWait(spillAfterMs)} spill time)`;
  else why = ' - below target';
  return { target, met: ratioOk && sufficed, detail: figures + why };
}

/** Latency: open-loop acquire p99 (from the scheduled time) at the target rate, the rate actually kept, and no errors. */
export function latencyVerdict(run: RedisRun, config: PlacementConfig): Verdict {
  const r = run.result;
  const a = r.acquire;
  const answeredPerSec = (r.attempted - r.errors) / (r.durationMs / 1000);
  const kept = answeredPerSec >= 0.99 * config.redisRatePerSec && !r.overloaded;
  const fast = a !== undefined && a.p99Ms <= LATENCY_TARGET_P99_MS;
  const met = kept && fast && r.errors === 0;
  const detail =
    `acquire p99 ${a === undefined ? '-' : a.p99Ms.toFixed(2)} ms (p50 ${a === undefined ? '-' : a.p50Ms.toFixed(2)}), ` +
    `${answeredPerSec.toFixed(0)} answered/s of ${config.redisRatePerSec} asked (${r.achievedPerSec.toFixed(0)}/s placed), ${r.errors} errors` +
    (r.overloaded ? ', stopped early: too many in flight' : '');
  return { target: `p99 <= ${LATENCY_TARGET_P99_MS} ms at ${config.redisRatePerSec} placements/s (${run.label})`, met, detail };
}

// loadtest/results/placement-2026-01-31T12-00-00Z.json
export async function writePlacementResults(dir: string, results: PlacementResults): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stamp = results.startedAt.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const file = path.join(dir, `placement-${stamp}.json`);
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}
