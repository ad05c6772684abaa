import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LogLevels, mergeFlags, readBool, readEnum, readInt, type Env, type LogLevel } from '@slipway/proto';
import { BenchError } from './benchError.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEFAULT_RESULTS_DIR = path.join(REPO_ROOT, 'loadtest', 'results');
const MIB = 1024 * 1024;

export interface BenchConfig {
  quick: boolean;
  /**
   * Each target first carries this much each way on one stream, measured and reported apart: the
   * first GiB through freshly started processes runs 10-15% slower than the next (README, Benchmark).
   */
  warmupBytes: number;
  uploadBytes: number;
  downloadBytes: number;
  /** Samples at concurrency 1. */
  latencySamples: number;
  concurrency: number;
  /** Rounds of `concurrency` connections. */
  rounds: number;
  /** A latency measurement starts no new round after this long (per target and concurrency). */
  phaseBudgetMs: number;
  transferTimeoutMs: number;
  sampleTimeoutMs: number;
  resultsDir: string;
  /** Log level of the gateway, agent and proxies. */
  logLevel: LogLevel;
  /** Print every child's output as it comes. */
  verbose: boolean;
  /**
   * The environment every child process starts from: only what a program needs to run. Nothing
   * of the caller's SLIPWAY_* or proxy settings (a sourced dev.env or an HTTPS_PROXY would change
   * what is measured).
   */
  childBaseEnv: Record<string, string>;
}

const FLAGS: Record<string, string> = {
  '--quick': 'SLIPWAY_BENCH_QUICK',
  '--warmup-mib': 'SLIPWAY_BENCH_WARMUP_MIB',
  '--upload-mib': 'SLIPWAY_BENCH_UPLOAD_MIB',
  '--download-mib': 'SLIPWAY_BENCH_DOWNLOAD_MIB',
  '--latency-samples': 'SLIPWAY_BENCH_LATENCY_SAMPLES',
  '--concurrency': 'SLIPWAY_BENCH_CONCURRENCY',
  '--rounds': 'SLIPWAY_BENCH_ROUNDS',
  '--phase-budget-ms': 'SLIPWAY_BENCH_PHASE_BUDGET_MS',
  '--transfer-timeout-ms': 'SLIPWAY_BENCH_TRANSFER_TIMEOUT_MS',
  '--sample-timeout-ms': 'SLIPWAY_BENCH_SAMPLE_TIMEOUT_MS',
  '--out': 'SLIPWAY_BENCH_OUT',
  '--log-level': 'SLIPWAY_BENCH_LOG_LEVEL',
  '--verbose': 'SLIPWAY_BENCH_VERBOSE',
};
export const BENCH_FLAGS: Readonly<Record<string, string>> = FLAGS;

// Full run: about 3 minutes on a 2-core machine. Quick: seconds, for the structure test.
const FULL = { warmupMib: 1024, uploadMib: 1024, downloadMib: 1024, latencySamples: 2000, rounds: 100, phaseBudgetMs: 20_000 };
const QUICK = { warmupMib: 8, uploadMib: 16, downloadMib: 16, latencySamples: 50, rounds: 2, phaseBudgetMs: 10_000 };

export function loadConfig(env: Env, argv: readonly string[]): BenchConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, FLAGS, problems, { boolean: new Set(['--quick', '--verbose']) });
  const quick = readBool(e, 'SLIPWAY_BENCH_QUICK', false, problems);
  const d = quick ? QUICK : FULL;
  const out = e['SLIPWAY_BENCH_OUT'] || DEFAULT_RESULTS_DIR;
  const config: BenchConfig = {
    quick,
    warmupBytes: readInt(e, 'SLIPWAY_BENCH_WARMUP_MIB', d.warmupMib, 1, 64 * 1024, problems) * MIB,
    uploadBytes: readInt(e, 'SLIPWAY_BENCH_UPLOAD_MIB', d.uploadMib, 1, 64 * 1024, problems) * MIB,
    downloadBytes: readInt(e, 'SLIPWAY_BENCH_DOWNLOAD_MIB', d.downloadMib, 1, 64 * 1024, problems) * MIB,
    latencySamples: readInt(e, 'SLIPWAY_BENCH_LATENCY_SAMPLES', d.latencySamples, 1, 1_000_000, problems),
    concurrency: readInt(e, 'SLIPWAY_BENCH_CONCURRENCY', 200, 2, 2_000, problems),
    rounds: readInt(e, 'SLIPWAY_BENCH_ROUNDS', d.rounds, 1, 100_000, problems),
    phaseBudgetMs: readInt(e, 'SLIPWAY_BENCH_PHASE_BUDGET_MS', d.phaseBudgetMs, 100, 3_600_000, problems),
    transferTimeoutMs: readInt(e, 'SLIPWAY_BENCH_TRANSFER_TIMEOUT_MS', 180_000, 1_000, 3_600_000, problems),
    sampleTimeoutMs: readInt(e, 'SLIPWAY_BENCH_SAMPLE_TIMEOUT_MS', 30_000, 100, 600_000, problems),
    resultsDir: path.resolve(out),
    logLevel: readEnum(e, 'SLIPWAY_BENCH_LOG_LEVEL', LogLevels, 'warn', problems),
    verbose: readBool(e, 'SLIPWAY_BENCH_VERBOSE', false, problems),
    childBaseEnv: Object.fromEntries(
      ['PATH', 'HOME', 'TMPDIR', 'LANG'].flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]!] as const])),
    ),
  };
  if (problems.length > 0) throw new BenchError('CONFIG_INVALID', `invalid bench configuration:\n  - ${problems.join('\n  - ')}`);
  return config;
}

export function usage(): string {
  return (
    `Usage: npm run bench:tunnel -- [flags]\n` +
    `Measures single-stream throughput and stream-open latency directly to a TCP upstream and through\n` +
    `Slipway (gateway, agent and CLI proxy processes) over HTTP/2 and over WebSocket.\n` +
    `Every flag can also be given as the environment variable shown.\n` +
    `${Object.entries(FLAGS)
      .map(([f, v]) => `  ${f.padEnd(22)} ${v}`)
      .join('\n')}\n` +
    `Defaults: --warmup-mib ${FULL.warmupMib} --upload-mib ${FULL.uploadMib} --download-mib ${FULL.downloadMib} --latency-samples ${FULL.latencySamples} ` +
    `--concurrency 200 --rounds ${FULL.rounds} --phase-budget-ms ${FULL.phaseBudgetMs}\n` +
    `--quick: --warmup-mib ${QUICK.warmupMib} --upload-mib ${QUICK.uploadMib} --download-mib ${QUICK.downloadMib} --latency-samples ${QUICK.latencySamples} ` +
    `--rounds ${QUICK.rounds} --phase-budget-ms ${QUICK.phaseBudgetMs}\n` +
    `Results: a table on stdout and JSON in --out (default loadtest/results/tunnel-<date>.json).\n`
  );
}
