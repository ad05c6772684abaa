import path from 'node:path';
import { mergeFlags, readBool, readEnum, readInt, type Env } from '@slipway/proto';
import { BenchError } from './benchError.js';
import { DEFAULT_RESULTS_DIR } from './benchConfig.js';

// Configuration of `npm run bench:placement`. --help is printed from FLAGS, the same table
// mergeFlags reads, so it lists every flag there is; DEFAULTS only labels them for --help.

export const BenchParts = ['all', 'simulation', 'redis'] as const;
export type BenchPart = (typeof BenchParts)[number];

export interface PlacementConfig {
  quick: boolean;
  part: BenchPart;
  seed: number;
  // Simulation
  projects: number;
  zipfExponent: number;
  builders: number;
  capacity: number;
  /** Offered slot utilisations to run, as fractions (0.5 = 50%). */
  loads: number[];
  /**
   * One more load, whose arrival rate makes the distinct projects building per retention window
   * this share of the builders (0.6 = 60%); 0 leaves it out.
   */
  workingSetShare: number;
  buildMedianMs: number;
  buildSigma: number;
  buildMaxMs: number;
  warmupMs: number;
  measureMs: number;
  idleRetentionMs: number;
  spillAfterMs: number;
  reclaimIntervalMs: number;
  ringVirtualNodes: number;
  cacheProjects: number;
  drainLimitMs: number;
  // Redis
  redisRatePerSec: number;
  redisMs: number;
  redisWarmupMs: number;
  redisClosedMs: number;
  redisSerialMs: number;
  redisConcurrency: number;
  redisReplicas: number;
  redisBuilders: number;
  redisCapacity: number;
  redisProjects: number;
  /** Share (0-1) of placements that are a new project's first build. */
  redisColdShare: number;
  redisServer: string;
  resultsDir: string;
  verbose: boolean;
  /** The environment redis-server starts with: PATH and little else. */
  childBaseEnv: Record<string, string>;
}

interface Flag {
  env: string;
  help: string;
}

const FLAGS: Record<string, Flag> = {
  '--quick': { env: 'SLIPWAY_BENCH_QUICK', help: 'small run (seconds): shorter virtual windows and Redis runs' },
  '--part': { env: 'SLIPWAY_BENCH_PART', help: `what to run: ${BenchParts.join(', ')}` },
  '--seed': { env: 'SLIPWAY_BENCH_SEED', help: 'PRNG seed of the trace, the random placer and the Redis load' },
  '--projects': { env: 'SLIPWAY_BENCH_PROJECTS', help: 'projects in the simulated trace' },
  '--zipf-exponent': { env: 'SLIPWAY_BENCH_ZIPF_EXPONENT', help: 'project popularity: rank k has weight k^-s' },
  '--builders': { env: 'SLIPWAY_BENCH_BUILDERS', help: 'builders (VMs) in the simulation, one platform' },
  '--capacity': { env: 'SLIPWAY_BENCH_CAPACITY', help: 'builds a builder runs at once (simulation)' },
  '--loads': { env: 'SLIPWAY_BENCH_LOADS', help: 'offered slot utilisations to simulate, percent, comma-separated' },
  '--working-set-percent': {
    env: 'SLIPWAY_BENCH_WORKING_SET_PERCENT',
    help:
      'one more load, before --loads: the arrival rate at which the distinct projects building per retention window are this percent ' +
      'of the builders (below 100, each can keep a builder: capacity suffices by construction); 0 leaves it out',
  },
  '--build-median-s': { env: 'SLIPWAY_BENCH_BUILD_MEDIAN_S', help: 'median build duration (lognormal), virtual seconds' },
  '--build-sigma': { env: 'SLIPWAY_BENCH_BUILD_SIGMA', help: 'sigma of the build duration lognormal' },
  '--build-max-min': { env: 'SLIPWAY_BENCH_BUILD_MAX_MIN', help: 'longer builds are cut to this, virtual minutes' },
  '--warmup-min': { env: 'SLIPWAY_BENCH_WARMUP_MIN', help: 'virtual minutes simulated before measuring' },
  '--measure-min': { env: 'SLIPWAY_BENCH_MEASURE_MIN', help: 'virtual minutes of arrivals that are measured' },
  '--idle-retention-min': {
    env: 'SLIPWAY_BENCH_IDLE_RETENTION_MIN',
    help: 'a builder idle this long loses its binding (cache) to the pool; also the repeat-build window',
  },
  '--spill-after-s': { env: 'SLIPWAY_BENCH_SPILL_AFTER_S', help: "spillAfterMs of acquire (the gateway's default is 30 s)" },
  '--reclaim-interval-s': { env: 'SLIPWAY_BENCH_RECLAIM_INTERVAL_S', help: 'how often the simulated fleet looks for idle builders' },
  '--ring-vnodes': { env: 'SLIPWAY_BENCH_RING_VNODES', help: 'virtual nodes per builder on the consistent-hash ring' },
  '--cache-projects': { env: 'SLIPWAY_BENCH_CACHE_PROJECTS', help: 'K: projects a builder cache remembers (random and hash placers)' },
  '--drain-limit-min': { env: 'SLIPWAY_BENCH_DRAIN_LIMIT_MIN', help: 'virtual minutes after the last arrival before waiting builds count as unplaced' },
  '--redis-rate': { env: 'SLIPWAY_BENCH_REDIS_RATE', help: 'open-loop placements per second against Redis' },
  '--redis-seconds': { env: 'SLIPWAY_BENCH_REDIS_SECONDS', help: 'length of each measured open-loop run' },
  '--redis-warmup-s': { env: 'SLIPWAY_BENCH_REDIS_WARMUP_S', help: 'unmeasured open-loop run before the measured runs (binds the warm projects, loads the scripts)' },
  '--redis-closed-seconds': { env: 'SLIPWAY_BENCH_REDIS_CLOSED_SECONDS', help: 'length of the closed-loop (max throughput) run' },
  '--redis-serial-seconds': {
    env: 'SLIPWAY_BENCH_REDIS_SERIAL_SECONDS',
    help: 'one placement at a time: what a warm and a new-project acquire cost without queueing',
  },
  '--redis-concurrency': { env: 'SLIPWAY_BENCH_REDIS_CONCURRENCY', help: 'placements in flight in the closed loop' },
  '--redis-replicas': { env: 'SLIPWAY_BENCH_REDIS_REPLICAS', help: 'RedisRoutingTable instances (gateway replicas), one connection each' },
  '--redis-builders': { env: 'SLIPWAY_BENCH_REDIS_BUILDERS', help: 'builders registered in Redis' },
  '--redis-capacity': {
    env: 'SLIPWAY_BENCH_REDIS_CAPACITY',
    help: "capacity of each builder registered in Redis (high, so the hottest project's instant builds seldom find it full)",
  },
  '--redis-projects': { env: 'SLIPWAY_BENCH_REDIS_PROJECTS', help: 'projects of the warm placements (Zipf), at most --redis-builders' },
  '--redis-cold-percent': { env: 'SLIPWAY_BENCH_REDIS_COLD_PERCENT', help: "percent of placements that are a new project's first build (pool path)" },
  '--redis-server': { env: 'SLIPWAY_BENCH_REDIS_SERVER', help: 'redis-server executable' },
  '--out': { env: 'SLIPWAY_BENCH_OUT', help: 'directory for the JSON results' },
  '--verbose': { env: 'SLIPWAY_BENCH_VERBOSE', help: "print redis-server's output" },
};

const DEFAULT_SEED = 20_261_127;
const FULL = { warmupMin: 120, measureMin: 360, redisSeconds: 10, redisWarmupS: 2, redisClosedSeconds: 10, redisSerialSeconds: 3 };
const QUICK = { warmupMin: 30, measureMin: 60, redisSeconds: 2, redisWarmupS: 1, redisClosedSeconds: 2, redisSerialSeconds: 1 };
const DEFAULTS: Record<string, string> = {
  '--part': 'all',
  '--seed': String(DEFAULT_SEED),
  '--projects': '10000',
  '--zipf-exponent': '1.1',
  '--builders': '200',
  '--capacity': '2',
  '--loads': '50,90',
  '--working-set-percent': '60',
  '--build-median-s': '180',
  '--build-sigma': '0.6',
  '--build-max-min': '60',
  '--warmup-min': `${FULL.warmupMin} (--quick ${QUICK.warmupMin})`,
  '--measure-min': `${FULL.measureMin} (--quick ${QUICK.measureMin})`,
  '--idle-retention-min': '30',
  '--spill-after-s': '30',
  '--reclaim-interval-s': '60',
  '--ring-vnodes': '100',
  '--cache-projects': '1',
  '--drain-limit-min': '1440',
  '--redis-rate': '1000',
  '--redis-seconds': `${FULL.redisSeconds} (--quick ${QUICK.redisSeconds})`,
  '--redis-warmup-s': `${FULL.redisWarmupS} (--quick ${QUICK.redisWarmupS})`,
  '--redis-closed-seconds': `${FULL.redisClosedSeconds} (--quick ${QUICK.redisClosedSeconds})`,
  '--redis-serial-seconds': `${FULL.redisSerialSeconds} (--quick ${QUICK.redisSerialSeconds})`,
  '--redis-concurrency': '32',
  '--redis-replicas': '3',
  '--redis-builders': '200',
  '--redis-capacity': '8',
  '--redis-projects': '100',
  '--redis-cold-percent': '25',
  '--redis-server': 'redis-server',
  '--out': 'loadtest/results',
};

const ENV_OF = Object.fromEntries(Object.entries(FLAGS).map(([flag, f]) => [flag, f.env]));

export function loadPlacementConfig(env: Env, argv: readonly string[]): PlacementConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, ENV_OF, problems, { boolean: new Set(['--quick', '--verbose']) });
  const quick = readBool(e, 'SLIPWAY_BENCH_QUICK', false, problems);
  const d = quick ? QUICK : FULL;
  const int = (flag: string, fallback: number, min: number, max: number): number => readInt(e, FLAGS[flag]!.env, fallback, min, max, problems);
  const dec = (flag: string, fallback: number, min: number, max: number): number => readDecimal(e, FLAGS[flag]!.env, fallback, min, max, problems);
  const config: PlacementConfig = {
    quick,
    part: readEnum(e, 'SLIPWAY_BENCH_PART', BenchParts, 'all', problems),
    seed: int('--seed', DEFAULT_SEED, 0, 0xffffffff),
    projects: int('--projects', 10_000, 1, 1_000_000),
    zipfExponent: dec('--zipf-exponent', 1.1, 0, 5),
    builders: int('--builders', 200, 1, 10_000),
    capacity: int('--capacity', 2, 1, 64),
    loads: readPercentList(e, 'SLIPWAY_BENCH_LOADS', [50, 90], problems).map((p) => p / 100),
    workingSetShare: int('--working-set-percent', 60, 0, 1000) / 100,
    buildMedianMs: int('--build-median-s', 180, 1, 86_400) * 1000,
    buildSigma: dec('--build-sigma', 0.6, 0, 3),
    buildMaxMs: int('--build-max-min', 60, 1, 1440) * 60_000,
    warmupMs: int('--warmup-min', d.warmupMin, 0, 10_080) * 60_000,
    measureMs: int('--measure-min', d.measureMin, 1, 10_080) * 60_000,
    idleRetentionMs: int('--idle-retention-min', 30, 1, 10_080) * 60_000,
    spillAfterMs: int('--spill-after-s', 30, 0, 3600) * 1000,
    reclaimIntervalMs: int('--reclaim-interval-s', 60, 1, 3600) * 1000,
    ringVirtualNodes: int('--ring-vnodes', 100, 1, 10_000),
    cacheProjects: int('--cache-projects', 1, 1, 1000),
    drainLimitMs: int('--drain-limit-min', 1440, 0, 100_000) * 60_000,
    redisRatePerSec: int('--redis-rate', 1000, 1, 100_000),
    redisMs: int('--redis-seconds', d.redisSeconds, 1, 3600) * 1000,
    redisWarmupMs: int('--redis-warmup-s', d.redisWarmupS, 0, 3600) * 1000,
    redisClosedMs: int('--redis-closed-seconds', d.redisClosedSeconds, 0, 3600) * 1000,
    redisSerialMs: int('--redis-serial-seconds', d.redisSerialSeconds, 0, 3600) * 1000,
    redisConcurrency: int('--redis-concurrency', 32, 1, 10_000),
    redisReplicas: int('--redis-replicas', 3, 1, 64),
    redisBuilders: int('--redis-builders', 200, 1, 10_000),
    redisCapacity: int('--redis-capacity', 8, 1, 64),
    redisProjects: int('--redis-projects', 100, 1, 10_000),
    redisColdShare: int('--redis-cold-percent', 25, 0, 100) / 100,
    redisServer: e['SLIPWAY_BENCH_REDIS_SERVER'] || 'redis-server',
    resultsDir: path.resolve(e['SLIPWAY_BENCH_OUT'] || DEFAULT_RESULTS_DIR),
    verbose: readBool(e, 'SLIPWAY_BENCH_VERBOSE', false, problems),
    childBaseEnv: Object.fromEntries(['PATH', 'HOME', 'TMPDIR', 'LANG'].flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]!] as const]))),
  };
  // Warm projects keep one builder each; more of them than builders would make "warm" placements cold.
  if (config.redisProjects > config.redisBuilders) {
    problems.push(`SLIPWAY_BENCH_REDIS_PROJECTS (${config.redisProjects}) must not exceed SLIPWAY_BENCH_REDIS_BUILDERS (${config.redisBuilders})`);
  }
  // The rate is found by raising it until that many distinct projects build: there must be more projects than that.
  if (config.workingSetShare * config.builders >= config.projects) {
    problems.push(
      `SLIPWAY_BENCH_WORKING_SET_PERCENT (${Math.round(config.workingSetShare * 100)}% of ${config.builders} builders) must ask for fewer projects per window than SLIPWAY_BENCH_PROJECTS (${config.projects})`,
    );
  }
  if (problems.length > 0) throw new BenchError('CONFIG_INVALID', `invalid bench configuration:\n  - ${problems.join('\n  - ')}`);
  return config;
}

export function placementUsage(): string {
  const rows = Object.entries(FLAGS).map(([flag, f]) => {
    const def = DEFAULTS[flag] === undefined ? '' : ` [default ${DEFAULTS[flag]}]`;
    return `  ${flag.padEnd(22)} ${f.env.padEnd(34)} ${f.help}${def}`;
  });
  return (
    `Usage: npm run bench:placement -- [flags]\n` +
    `Part 1 (simulation): one seeded trace of builds (Zipf projects, Poisson arrivals, lognormal durations)\n` +
    `placed by Slipway's MemoryRoutingTable on a virtual clock, by a random placer and by consistent hashing;\n` +
    `warm-hit ratio, spills and queue waits at a working-set load (--working-set-percent: few enough projects build per retention\n` +
    `window for each to keep a builder, so capacity suffices) and at each --loads level (offered slot utilisation).\n` +
    `Part 2 (redis): a throwaway redis-server, --redis-replicas RedisRoutingTable instances round-robin,\n` +
    `open-loop placements (acquire + endAllocation) at --redis-rate, then a closed-loop max-throughput run.\n` +
    `Every flag can also be given as the environment variable shown (the flag wins).\n` +
    `${rows.join('\n')}\n` +
    `Results: tables and verdicts on stdout, JSON in --out (placement-<UTC time>.json).\n`
  );
}

function readDecimal(e: Env, name: string, fallback: number, min: number, max: number, problems: string[]): number {
  const raw = e[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || value < min || value > max) {
    problems.push(`${name} must be a number from ${min} to ${max}; got '${raw}'`);
    return fallback;
  }
  return value;
}

function readPercentList(e: Env, name: string, fallback: number[], problems: string[]): number[] {
  const raw = e[name];
  if (raw === undefined || raw === '') return fallback;
  const values = raw.split(',').map((s) => s.trim());
  const ok = values.every((v) => /^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 100);
  if (!ok || values.length === 0) {
    problems.push(`${name} must be comma-separated whole percentages from 1 to 100; got '${raw}'`);
    return fallback;
  }
  return values.map(Number);
}
