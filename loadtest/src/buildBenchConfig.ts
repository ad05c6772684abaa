import { mergeFlags, readBool, readEnum, readInt, type Env } from '@slipway/proto';
import { BenchError } from './benchError.js';

// `npm run bench:build`'s flags (each also an environment variable).

export interface BuildBenchConfig {
  runs: number;
  seed: number;
  smallFiles: number;
  largeFiles: number;
  largeFileBytes: number;
  /** Which `slipway` is measured: the bundle built from the current sources (as shipped), or the sources run through tsx. */
  cli: 'bundle' | 'source';
  /** Another checkout whose cli/ is run (bundled, or through tsx) instead of this one's (empty: this one). */
  cliRepo: string;
  /** Folder for V8 CPU profiles of each `slipway build` (none when empty). */
  cpuProfDir: string;
  verbose: boolean;
  childBaseEnv: Record<string, string>;
}

const FLAGS: Record<string, string> = {
  '--runs': 'SLIPWAY_BENCH_RUNS',
  '--seed': 'SLIPWAY_BENCH_SEED',
  '--small-files': 'SLIPWAY_BENCH_SMALL_FILES',
  '--large-files': 'SLIPWAY_BENCH_LARGE_FILES',
  '--large-file-mb': 'SLIPWAY_BENCH_LARGE_FILE_MB',
  '--cli': 'SLIPWAY_BENCH_CLI',
  '--cli-repo': 'SLIPWAY_BENCH_CLI_REPO',
  '--cpu-prof-dir': 'SLIPWAY_BENCH_CPU_PROF_DIR',
  '--verbose': 'SLIPWAY_BENCH_VERBOSE',
};

export function loadBuildBenchConfig(env: Env, argv: readonly string[]): BuildBenchConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, FLAGS, problems, { boolean: new Set(['--verbose']) });
  const config: BuildBenchConfig = {
    runs: readInt(e, 'SLIPWAY_BENCH_RUNS', 3, 1, 100, problems),
    seed: readInt(e, 'SLIPWAY_BENCH_SEED', 20261127, 0, 2 ** 31 - 1, problems),
    smallFiles: readInt(e, 'SLIPWAY_BENCH_SMALL_FILES', 10_000, 0, 1_000_000, problems),
    largeFiles: readInt(e, 'SLIPWAY_BENCH_LARGE_FILES', 20, 0, 1_000, problems),
    largeFileBytes: readInt(e, 'SLIPWAY_BENCH_LARGE_FILE_MB', 10, 1, 4_096, problems) * 1_000_000,
    cli: readEnum(e, 'SLIPWAY_BENCH_CLI', ['bundle', 'source'] as const, 'bundle', problems),
    cliRepo: e['SLIPWAY_BENCH_CLI_REPO'] ?? '',
    cpuProfDir: e['SLIPWAY_BENCH_CPU_PROF_DIR'] ?? '',
    verbose: readBool(e, 'SLIPWAY_BENCH_VERBOSE', false, problems),
    childBaseEnv: Object.fromEntries(['PATH', 'HOME', 'TMPDIR', 'LANG'].flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]!] as const]))),
  };
  if (problems.length > 0) throw new BenchError('CONFIG_INVALID', `invalid bench configuration:\n  - ${problems.join('\n  - ')}`);
  return config;
}

export function buildBenchUsage(): string {
  return (
    `Usage: npm run bench:build -- [flags]\n` +
    `Builds one generated context (small files in nested folders plus large random files, a Dockerfile that\n` +
    `COPYs all of it and reads it in a RUN step) with DOCKER_BUILDKIT=1 docker build straight to a dockerd 20.10\n` +
    `and with slipway build through a gateway and an agent in dockerd mode in front of the same dockerd:\n` +
    `cold (builder cache pruned, --no-cache) and incremental (one small file changed), alternating the order.\n` +
    `${Object.entries(FLAGS)
      .map(([f, v]) => `  ${f.padEnd(18)} ${v}`)
      .join('\n')}\n` +
    `Defaults: --runs 3 --seed 20261127 --small-files 10000 --large-files 20 --large-file-mb 10 --cli bundle\n` +
    `(--cli bundle: the CLI bundled from the current sources first, as it would ship; --cli source: run through tsx;\n` +
    `--cli-repo DIR: DIR's cli/ instead, e.g. a git worktree of an earlier commit, against this checkout's gateway and agent). Needs root.\n`
  );
}
