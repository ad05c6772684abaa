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

// 2: simulation loads carry a label and may be a working-set load (workingSet set), listed first.
export const PLACEMENT_RESULTS_SCHEMA = 'slipway-bench-placement/2';
export const WARM_TARGET = 0.95;
export const LATENCY_TARGET_P99_MS = 5;

export interface SimulatedLoad {
  /** How the table names the load: "50%" (offered slot utilisation) or "ws 60%" (working set). */
  label: string;
  /**
   * Set for the working-set load: its arrival rate was chosen so that, on average,
   * `targetProjectsPerWindow` (`share` of the builders) distinct projects build per retention window.
   */
  workingSet: { share: number; targetProjectsPerWindow: number } | undefined;
  /** Offered slot utilisation asked for (0.5 = 50%); for the working-set load, what its rate works out to. */
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
 * Warm hits, judged where capacity suffices: on the working-set load, whose distinct projects per
 * retention window fit in the builders, one each (without one, on the lightest load, by the same
 * rules). Met only when Slipway's warm ratio reaches the target, that load's measured working set
 * did fit, every measured build was placed, and builds did not queue beyond what the policy
 * itself allows (p99 wait within spillAfterMs): a ratio bought by leaving builds queued for their
 * builder is not the target. The other loads are quoted with their waits, not judged.
 */
export function warmVerdict(
  loads: readonly SimulatedLoad[],
  limits: { spillAfterMs: number; builders: number; retentionMs: number },
  fmtWait: (ms: number) => string,
): Verdict | undefined {
  const judged = loads.find((l) => l.workingSet !== undefined) ?? [...loads].sort((a, b) => a.utilisationTarget - b.utilisationTarget)[0];
  const s = judged?.placers.find((p) => p.placer === SLIPWAY);
  if (judged === undefined || s === undefined) return undefined;
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const perWindow = (l: SimulatedLoad): string => `${l.distinctProjectsPerWindow.toFixed(0)} projects per ${fmtWait(limits.retentionMs)} window`;
  const fits = judged.distinctProjectsPerWindow <= limits.builders;
  const ratioOk = s.warmRatio >= WARM_TARGET;
  const waitOk = s.waitP99Ms <= limits.spillAfterMs;
  const met = ratioOk && fits && waitOk && s.unplaced === 0;
  const where =
    judged.workingSet === undefined
      ? `load ${judged.label}, the lightest simulated (no working-set load)`
      : `load ${judged.label}: ${pct(judged.offeredUtilisation)} of slots, rate chosen for ${judged.workingSet.targetProjectsPerWindow.toFixed(0)} projects per window`;
  const target = `>= ${pct(WARM_TARGET)} warm hits when capacity suffices, with queue wait p99 <= the ${fmtWait(limits.spillAfterMs)} spill time (Slipway, ${where})`;
  const figures =
    `${pct(s.warmRatio)} of ${s.repeatBuilds} repeat builds warm; queue wait p50 ${fmtWait(s.waitP50Ms)}, p99 ${fmtWait(s.waitP99Ms)}, max ${fmtWait(s.waitMaxMs)}; ` +
    `${s.unplaced === 0 ? 'all' : `${s.placed} of`} ${s.measuredBuilds} measured builds placed; ${perWindow(judged)} for ${limits.builders} builders`;
  const why: string[] = [];
  if (!fits) why.push(`capacity did not suffice: more projects build per retention window than there are builders to hold their caches`);
  if (s.unplaced > 0) why.push(`${s.unplaced} builds never placed`);
  if (!waitOk) why.push(`the ratio was bought by queueing (wait p99 above the spill time)`);
  if (!ratioOk) why.push('below target');
  const others = loads
    .filter((l) => l !== judged)
    .flatMap((l) => {
      const o = l.placers.find((p) => p.placer === SLIPWAY);
      if (o === undefined) return [];
      const short = l.distinctProjectsPerWindow > limits.builders ? ', more than the builders: capacity did not suffice' : '';
      return [`load ${l.label}: ${pct(o.warmRatio)} warm, wait p50 ${fmtWait(o.waitP50Ms)}, p99 ${fmtWait(o.waitP99Ms)}; ${perWindow(l)}${short}`];
    });
  const detail =
    figures +
    (why.length > 0 ? ` - ${why.join('; ')}` : '') +
    (others.length > 0 ? `. Not judged: ${others.join('; ')}` : '');
  return { target, met, detail };
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
