import { SeededRandom } from './seededRandom.js';
import { ZipfSampler } from './zipfSampler.js';

// The workload every placer of bench:placement is run on: one list of builds (when each arrives,
// which project, how long it runs), made once from the seed so the placers see exactly the same
// builds. Times are virtual milliseconds from VIRTUAL_EPOCH_MS.

/** Virtual time zero (2026-01-01): the routing table takes epoch milliseconds. */
export const VIRTUAL_EPOCH_MS = Date.UTC(2026, 0, 1);

export interface TraceParams {
  seed: number;
  projects: number;
  zipfExponent: number;
  buildsPerMinute: number;
  warmupMs: number;
  measureMs: number;
  durationMedianMs: number;
  durationSigma: number;
  /** Longer draws are cut to this (a lognormal tail is unbounded; builds have timeouts). */
  durationMaxMs: number;
  /** A build is a repeat when its project had a build arrive less than this long before it. */
  retentionMs: number;
}

export interface BuildTrace {
  params: TraceParams;
  count: number;
  arrivalMs: Float64Array;
  /** Zipf rank of the project, 1 = most popular; its name is projectName(rank). */
  project: Int32Array;
  durationMs: Float64Array;
  /** 1 when the build arrived in the measurement window (after warm-up). */
  measured: Uint8Array;
  /** 1 when the same project had a build arrive within `retentionMs` before this one. */
  repeat: Uint8Array;
  warmupEndMs: number;
  endMs: number;
}

export function projectName(rank: number): string {
  return `p${rank}`;
}

/** Mean of a lognormal with this median and sigma: median * e^(sigma^2 / 2). */
export function lognormalMean(median: number, sigma: number): number {
  return median * Math.exp((sigma * sigma) / 2);
}

export function makeTrace(params: TraceParams): BuildTrace {
  const root = new SeededRandom(params.seed);
  // Separate streams: changing how durations are drawn does not move arrivals or projects.
  const arrivals = root.fork(1);
  const projects = root.fork(2);
  const durations = root.fork(3);
  const zipf = new ZipfSampler(params.projects, params.zipfExponent);
  const start = VIRTUAL_EPOCH_MS;
  const warmupEndMs = start + params.warmupMs;
  const endMs = warmupEndMs + params.measureMs;
  const meanGapMs = 60_000 / params.buildsPerMinute;

  const arrival: number[] = [];
  const project: number[] = [];
  const duration: number[] = [];
  for (let t = start + arrivals.exponential(meanGapMs); t < endMs; t += arrivals.exponential(meanGapMs)) {
    arrival.push(t);
    project.push(zipf.sample(projects));
    duration.push(Math.min(params.durationMaxMs, Math.max(1_000, durations.lognormal(params.durationMedianMs, params.durationSigma))));
  }

  const count = arrival.length;
  const measured = new Uint8Array(count);
  const repeat = new Uint8Array(count);
  const lastArrival = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const t = arrival[i]!;
    const p = project[i]!;
    measured[i] = t >= warmupEndMs ? 1 : 0;
    const prev = lastArrival.get(p);
    repeat[i] = prev !== undefined && t - prev < params.retentionMs ? 1 : 0;
    lastArrival.set(p, t);
  }
  return {
    params,
    count,
    arrivalMs: Float64Array.from(arrival),
    project: Int32Array.from(project),
    durationMs: Float64Array.from(duration),
    measured,
    repeat,
    warmupEndMs,
    endMs,
  };
}

/** Offered load of the measured builds: busy slot-time they ask for over the slot-time there is. */
export function offeredUtilisation(trace: BuildTrace, slots: number): number {
  let busyMs = 0;
  for (let i = 0; i < trace.count; i++) if (trace.measured[i]) busyMs += trace.durationMs[i]!;
  return busyMs / (slots * trace.params.measureMs);
}

/**
 * Mean number of distinct projects that build in one retention window of the measurement period:
 * with one project per builder, the builders needed to keep all of them warm.
 */
export function distinctProjectsPerWindow(trace: BuildTrace): number {
  const windowMs = trace.params.retentionMs;
  const windows = Math.max(1, Math.floor(trace.params.measureMs / windowMs));
  let total = 0;
  let i = 0;
  while (i < trace.count && !trace.measured[i]) i++;
  for (let w = 0; w < windows; w++) {
    const from = trace.warmupEndMs + w * windowMs;
    const seen = new Set<number>();
    for (; i < trace.count && trace.arrivalMs[i]! < from + windowMs; i++) seen.add(trace.project[i]!);
    total += seen.size;
  }
  return total / windows;
}
