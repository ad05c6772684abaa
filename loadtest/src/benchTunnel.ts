// `npm run bench:tunnel`: single-stream throughput and stream-open latency directly to a TCP
// upstream and through Slipway over HTTP/2 and over WebSocket, in one run against one upstream.
// Only wiring lives here: benchStack.ts starts the processes, benchRun.ts measures,
// benchResults.ts / resultsTable.ts report.
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BenchClient } from './benchClient.js';
import { loadConfig, REPO_ROOT, usage, type BenchConfig } from './benchConfig.js';
import { BenchError, exitCodeOf, toBenchError } from './benchError.js';
import { environment, summarizeMeasurements, writeResults, RESULTS_SCHEMA, type BenchResults } from './benchResults.js';
import { runBench } from './benchRun.js';
import { startBenchStack, TargetNames, type BenchStack } from './benchStack.js';
import { metricTotal } from './gatewayMetrics.js';
import { formatResults } from './resultsTable.js';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(usage());
  process.exit(0);
}

const progress = (line: string): void => {
  process.stderr.write(`bench: ${line}\n`);
};

// What has to be stopped, whichever way the run ends.
const held: { dir?: string; stack?: BenchStack; client?: BenchClient } = {};
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await held.client?.stop();
    await held.stack?.close();
    if (held.dir) await rm(held.dir, { recursive: true, force: true });
  })();
  return cleaning;
}

// However the process ends (a second Ctrl-C included), the scratch directory goes; the children
// are SIGKILLed by benchProcess.ts's own exit hook.
process.on('exit', () => {
  if (held.dir) rmSync(held.dir, { recursive: true, force: true });
});

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(exitCodeOf('INTERRUPTED')); // second signal: the exit hook SIGKILLs the children
    interrupted = true;
    progress(`${signal}: stopping every process the bench started`);
    void cleanup().finally(() => process.exit(exitCodeOf('INTERRUPTED')));
  });
}

async function main(config: BenchConfig): Promise<void> {
  const startedAt = new Date();
  held.dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-bench-'));
  progress('starting upstream, gateway, agent and proxies');
  held.stack = await startBenchStack({ repoRoot: REPO_ROOT, dir: held.dir, logLevel: config.logLevel, echo: config.verbose, baseEnv: config.childBaseEnv });
  held.client = await BenchClient.start({ repoRoot: REPO_ROOT, env: config.childBaseEnv, echo: config.verbose });
  const measurements = await runBench(config, held.stack, held.client, progress);
  const metrics = await held.stack.metrics();
  const finishedAt = new Date();
  const { resultsDir: _dir, verbose: _verbose, childBaseEnv: _env, ...shownConfig } = config;
  const results: BenchResults = {
    schema: RESULTS_SCHEMA,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    environment: environment(REPO_ROOT),
    config: shownConfig,
    upstream: held.stack.upstreamAddress,
    targets: TargetNames,
    ...summarizeMeasurements(measurements, config.concurrency),
    warmups: measurements.warmups,
    transfers: measurements.transfers,
    latencies: measurements.latencies,
    gateway: {
      streamsOpened: metricTotal(metrics, 'slipway_tunnel_streams_opened_total'),
      streamsFailed: metricTotal(metrics, 'slipway_tunnel_streams_failed_total'),
      bytesCarried: metricTotal(metrics, 'slipway_tunnel_bytes_total'),
      streamsOnLanes: metricTotal(metrics, 'slipway_tunnel_streams_by_path_total', (labels) => labels.includes('path="lane"')),
    },
  };
  const mismatch = results.transfers.find((t) => t.bytesVerified !== t.bytes);
  if (mismatch) throw new BenchError('PROTOCOL', `${mismatch.direction} via ${mismatch.target}: ${mismatch.bytesVerified} of ${mismatch.bytes} bytes verified`);
  process.stdout.write(`\n${formatResults(results)}`);
  const file = await writeResults(config.resultsDir, results);
  const relative = path.relative(process.cwd(), file);
  process.stdout.write(`\nresults written to ${relative.startsWith('..') ? file : relative}\n`);
}

let config: BenchConfig;
try {
  config = loadConfig(process.env, argv);
} catch (err) {
  const error = toBenchError(err);
  process.stderr.write(`bench: ${error.message}\n`);
  process.exit(exitCodeOf(error.code));
}

main(config).then(
  async () => {
    await cleanup();
    process.exit(0);
  },
  async (err: unknown) => {
    if (interrupted) return; // the signal handler is already cleaning up and will exit
    const error = toBenchError(err);
    process.stderr.write(`bench: error (${error.code}): ${error.message}\n`);
    await cleanup();
    process.exit(exitCodeOf(error.code));
  },
);
