// `npm run bench:placement`: how well Slipway's placement keeps builds on warm builders, against
// a random and a consistent-hash placer on one simulated trace (part 1), and how fast the Redis
// routing table places under load (part 2). Only wiring lives here: placementSimulationRun.ts
// and redisPlacementRun.ts measure, placementResults.ts judges, placementTable.ts prints.
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './benchConfig.js';
import { exitCodeOf, toBenchError } from './benchError.js';
import { environment } from './benchResults.js';
import { loadPlacementConfig, placementUsage, type PlacementConfig } from './placementConfig.js';
import {
  latencyVerdict,
  PLACEMENT_RESULTS_SCHEMA,
  warmVerdict,
  writePlacementResults,
  type PlacementResults,
  type Verdict,
} from './placementResults.js';
import { runPlacementSimulation } from './placementSimulationRun.js';
import { formatPlacementResults, formatWait } from './placementTable.js';
import { closeRedisPlacement, runRedisPlacement, type RedisHeld } from './redisPlacementRun.js';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(placementUsage());
  process.exit(0);
}

const progress = (line: string): void => {
  process.stderr.write(`bench: ${line}\n`);
};

// redis-server is SIGKILLed by benchProcess.ts's exit hook however the process ends; this
// closes it (and the connections) in order when there is time to.
const held: RedisHeld = {};
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(exitCodeOf('INTERRUPTED'));
    interrupted = true;
    progress(`${signal}: stopping`);
    void closeRedisPlacement(held)
      .catch(() => undefined)
      .finally(() => process.exit(exitCodeOf('INTERRUPTED')));
  });
}

async function main(config: PlacementConfig): Promise<void> {
  const startedAt = new Date();
  const loadAverageAtStart = os.loadavg();
  progress(`seed ${config.seed}`);
  const runSimulation = config.part !== 'redis';
  const runRedis = config.part !== 'simulation';
  const simulation = runSimulation ? await runPlacementSimulation(config, progress) : undefined;
  let redis: PlacementResults['redis'];
  if (runRedis) {
    try {
      redis = await runRedisPlacement(config, held, progress);
    } finally {
      await closeRedisPlacement(held);
    }
  }
  const verdicts: Verdict[] = [];
  const warm = simulation === undefined ? undefined : warmVerdict(simulation, { spillAfterMs: config.spillAfterMs, builders: config.builders, retentionMs: config.idleRetentionMs }, formatWait);
  if (warm !== undefined) verdicts.push(warm);
  const targetRuns = redis?.runs.filter((r) => r.result.mode === 'open-loop') ?? [];
  for (const run of targetRuns) verdicts.push(latencyVerdict(run, config));
  const finishedAt = new Date();
  const { childBaseEnv: _env, resultsDir: _dir, verbose: _verbose, ...shownConfig } = config;
  const results: PlacementResults = {
    schema: PLACEMENT_RESULTS_SCHEMA,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    environment: { ...environment(REPO_ROOT), loadAverageAtStart, loadAverageAtEnd: os.loadavg() },
    config: shownConfig,
    simulation,
    redis,
    verdicts,
  };
  process.stdout.write(`\n${formatPlacementResults(results)}`);
  const file = await writePlacementResults(config.resultsDir, results);
  const relative = path.relative(process.cwd(), file);
  process.stdout.write(`\nresults written to ${relative.startsWith('..') ? file : relative} (${results.durationSeconds.toFixed(0)} s)\n`);
}

let config: PlacementConfig;
try {
  config = loadPlacementConfig(process.env, argv);
} catch (err) {
  const error = toBenchError(err);
  process.stderr.write(`bench: ${error.message}\n`);
  process.exit(exitCodeOf(error.code));
}

main(config).then(
  () => process.exit(0),
  async (err: unknown) => {
    if (interrupted) return;
    const error = toBenchError(err);
    process.stderr.write(`bench: error (${error.code}): ${error.stack ?? error.message}\n`);
    await closeRedisPlacement(held).catch(() => undefined);
    process.exit(exitCodeOf(error.code));
  },
);
