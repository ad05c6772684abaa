import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchConfig } from './benchConfig.js';
import type { CpuRole, LatencyMeasurement, Measurements, TransferMeasurement } from './benchRun.js';
import { TargetNames, type TargetName } from './benchStack.js';

// 2: the measured transfers follow a first transfer each way per target (warmups), reported apart.
export const RESULTS_SCHEMA = 'slipway-bench-tunnel/2';

export interface SummaryRow {
  /** Stable key, e.g. `upload_mbps`, `open_p50_ms_c200`. */
  key: string;
  label: string;
  values: Record<TargetName, number>;
  /** Each target's value divided by direct's. */
  ratioToDirect: Record<TargetName, number>;
}

export interface BenchResults {
  schema: typeof RESULTS_SCHEMA;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  environment: { node: string; platform: string; arch: string; cpus: number; cpuModel: string; gitCommit: string | undefined };
  config: Omit<BenchConfig, 'resultsDir' | 'verbose' | 'childBaseEnv'>;
  upstream: string;
  targets: readonly TargetName[];
  summary: SummaryRow[];
  /** Slipway's p50 minus direct's p50, in ms. */
  addedP50Ms: Record<'h2' | 'websocket', Record<string, number>>;
  /** The first transfer each way on each target (config.warmupBytes), before the measured ones. */
  warmups: TransferMeasurement[];
  transfers: TransferMeasurement[];
  latencies: LatencyMeasurement[];
  gateway: { streamsOpened: number; streamsFailed: number; bytesCarried: number; streamsOnLanes: number };
}

function byTarget<T extends { target: TargetName }>(items: readonly T[], pick: (item: T) => number): Record<TargetName, number> {
  const out = {} as Record<TargetName, number>;
  for (const name of TargetNames) {
    const item = items.find((i) => i.target === name);
    out[name] = item === undefined ? NaN : pick(item);
  }
  return out;
}

function row(key: string, label: string, values: Record<TargetName, number>): SummaryRow {
  const ratioToDirect = {} as Record<TargetName, number>;
  for (const name of TargetNames) ratioToDirect[name] = values[name] / values.direct;
  return { key, label, values, ratioToDirect };
}

export function summarizeMeasurements(m: Measurements, concurrency: number): { summary: SummaryRow[]; addedP50Ms: BenchResults['addedP50Ms'] } {
  const summary: SummaryRow[] = [];
  for (const direction of ['upload', 'download'] as const) {
    const items = m.transfers.filter((t) => t.direction === direction);
    summary.push(row(`${direction}_mbps`, `${direction} MB/s`, byTarget(items, (t) => t.mbPerSec)));
  }
  for (const direction of ['upload', 'download'] as const) {
    const items = m.warmups.filter((t) => t.direction === direction);
    summary.push(row(`first_${direction}_mbps`, `first ${direction} MB/s`, byTarget(items, (t) => t.mbPerSec)));
  }
  const addedP50Ms: BenchResults['addedP50Ms'] = { h2: {}, websocket: {} };
  for (const c of [1, concurrency]) {
    const items = m.latencies.filter((l) => l.concurrency === c);
    const p50 = byTarget(items, (l) => l.p50Ms);
    summary.push(row(`open_p50_ms_c${c}`, `open p50 ms, c=${c}`, p50));
    summary.push(row(`open_p99_ms_c${c}`, `open p99 ms, c=${c}`, byTarget(items, (l) => l.p99Ms)));
    addedP50Ms.h2[`c${c}`] = p50.h2 - p50.direct;
    addedP50Ms.websocket[`c${c}`] = p50.websocket - p50.direct;
  }
  return { summary, addedP50Ms };
}

export function environment(repoRoot: string): BenchResults['environment'] {
  let gitCommit: string | undefined;
  try {
    gitCommit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).trim();
  } catch {
    gitCommit = undefined;
  }
  return { node: process.version, platform: process.platform, arch: process.arch, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', gitCommit };
}

/** Total CPU seconds of the given roles, or undefined when none was measured. */
export function cpuTotal(cpu: Partial<Record<CpuRole, number>>, roles: readonly CpuRole[]): number | undefined {
  const values = roles.map((r) => cpu[r]).filter((v): v is number => v !== undefined);
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0);
}

// loadtest/results/tunnel-2025-01-31T12-00-00Z.json (colons are awkward in file names).
export async function writeResults(dir: string, results: BenchResults): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stamp = results.startedAt.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const file = path.join(dir, `tunnel-${stamp}.json`);
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}
