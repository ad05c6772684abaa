// `npm run bench:build`: one generated context (10,000 small files plus 200 MB of large ones by
// default) built with `DOCKER_BUILDKIT=1 docker build` straight to a dockerd 20.10 and with
// `slipway build` through a gateway and an agent in front of the same dockerd, cold and
// incremental, several runs in alternating order. Only wiring lives here: buildBenchContext.ts
// makes the context, benchDockerd.ts / buildBenchStack.ts start the processes, buildBenchRun.ts
// times one build, buildBenchTable.ts reports.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './benchConfig.js';
import { BenchError, exitCodeOf, toBenchError } from './benchError.js';
import { environment } from './benchResults.js';
import { startBenchDockerd, type BenchDockerd } from './benchDockerd.js';
import { buildBenchUsage, loadBuildBenchConfig, type BuildBenchConfig } from './buildBenchConfig.js';
import { prepareBenchCli, sourceBenchCli } from './buildBenchCli.js';
import { makeBenchContext } from './buildBenchContext.js';
import { runBuild, type BuildCase, type BuildSample, type BuildTool } from './buildBenchRun.js';
import { BUILD_PLATFORM, startBuildBenchStack, type BuildBenchStack } from './buildBenchStack.js';
import { formatBuildBench, verdicts } from './buildBenchTable.js';
import { fetchGatewayMetrics, metricTotal } from './gatewayMetrics.js';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(buildBenchUsage());
  process.exit(0);
}

const IMAGE = 'slipway-bench:docker';
const TARGET_RATIO = 1.2;

const progress = (line: string): void => {
  process.stderr.write(`bench: ${line}\n`);
};
const loadavg = (): string => os.loadavg().map((v) => v.toFixed(2)).join(' ');

const held: { dir?: string; dockerd?: BenchDockerd; stack?: BuildBenchStack } = {};
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await held.stack?.close().catch(() => undefined);
    await held.dockerd?.stop().catch(() => undefined);
    if (held.dir) await rm(held.dir, { recursive: true, force: true });
  })();
  return cleaning;
}
process.on('exit', () => {
  if (held.dir) rmSync(held.dir, { recursive: true, force: true });
});
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(exitCodeOf('INTERRUPTED'));
    interrupted = true;
    progress(`${signal}: stopping every process the bench started`);
    void cleanup().finally(() => process.exit(exitCodeOf('INTERRUPTED')));
  });
}

async function main(config: BuildBenchConfig): Promise<number> {
  const startedAt = new Date();
  const loadAtStart = loadavg();
  held.dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-bench-build-'));
  const dir = held.dir;
  progress(`generating the context (seed ${config.seed})`);
  const context = await makeBenchContext(path.join(dir, 'ctx'), config.seed, config);
  const original = await readFile(context.touchedFile);
  progress(config.cli === 'source' ? `running the CLI from ${config.cliRepo || 'its'} sources through tsx` : `bundling the CLI from ${config.cliRepo || 'the current'} sources`);
  const cli = config.cli === 'bundle' ? await prepareBenchCli(path.join(dir, 'cli'), REPO_ROOT, config.cliRepo) : sourceBenchCli(REPO_ROOT, config.cliRepo);
  progress(`starting dockerd 20.10, a gateway and an agent in dockerd mode`);
  const dockerd = (held.dockerd = await startBenchDockerd(path.join(dir, 'd'), config.childBaseEnv, config.verbose));
  const stack = (held.stack = await startBuildBenchStack(REPO_ROOT, path.join(dir, 's'), dockerd.socketPath, config.childBaseEnv, config.verbose));
  const dockerConfig = path.join(dir, 'docker-config');
  await mkdir(dockerConfig);
  if (config.cpuProfDir) await mkdir(config.cpuProfDir, { recursive: true });
  const watched = { dockerd: dockerd.process.pid, gateway: stack.gateway.pid, agent: stack.agent.pid };

  const build = (tool: BuildTool, kind: BuildCase, contextDir: string): Promise<BuildSample> => {
    const noCache = kind === 'cold' ? ['--no-cache'] : [];
    if (tool === 'docker') {
      return runBuild({
        tool,
        kind,
        command: '/usr/bin/docker',
        args: ['-H', `unix://${dockerd.socketPath}`, 'build', '--progress=plain', '-t', IMAGE, ...noCache, contextDir],
        env: { ...config.childBaseEnv, DOCKER_BUILDKIT: '1', DOCKER_CONFIG: dockerConfig },
        cwd: dir,
        watched,
      });
    }
    const prof = config.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', config.cpuProfDir] : [];
    return runBuild({
      tool,
      kind,
      command: process.execPath,
      args: [...cli.nodeArgs(prof), 'build', '--platform', BUILD_PLATFORM, '--progress=plain', ...noCache, contextDir],
      env: { ...config.childBaseEnv, HOME: dir, ...stack.cliEnv },
      cwd: REPO_ROOT,
      watched,
    });
  };
  const coldPrep = async (): Promise<void> => {
    await dockerd.api('DELETE', `/images/${IMAGE}?force=1`, [404]);
    await dockerd.api('POST', '/build/prune?all=1');
  };
  // Each measured build starts on a quiet disk: a cold build writes the context three times over
  // (upload, COPY, image), and the kernel writing back the previous build's share during the next
  // one moved single builds by a factor of two on these machines, whichever tool came second.
  const settleDisk = (): Promise<void> =>
    new Promise((resolve, reject) => execFile('sync', (err) => (err ? reject(new BenchError('MEASUREMENT_FAILED', `sync failed: ${err.message}`)) : resolve())));

  // Warm-up, not counted: the Dockerfile frontend, tsx's transpile cache (--cli source), the first containers.
  progress('warm-up builds of a small context');
  const tiny = path.join(dir, 'tiny');
  await mkdir(tiny);
  await writeFile(path.join(tiny, 'Dockerfile'), 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","true"]\n');
  await writeFile(path.join(tiny, 'busybox'), await readFile('/bin/busybox'), { mode: 0o755 });
  await build('docker', 'cold', tiny);
  await build('slipway', 'cold', tiny);

  // Which path carried slipway's streams to the agent (a lane, or the agent link when no lane was idle).
  const gatewayCa = await readFile(stack.cliEnv['SLIPWAY_CA_CERT']!);
  const streamPaths = async (): Promise<{ lane: number; link: number }> => {
    const text = await fetchGatewayMetrics(stack.cliEnv['SLIPWAY_GATEWAY']!, gatewayCa);
    const on = (p: string): number => metricTotal(text, 'slipway_tunnel_streams_by_path_total', (labels) => labels.includes(`path="${p}"`));
    return { lane: on('lane'), link: on('link') };
  };
  const samples: BuildSample[] = [];
  for (let run = 0; run < config.runs; run++) {
    const order: BuildTool[] = run % 2 === 0 ? ['docker', 'slipway'] : ['slipway', 'docker'];
    for (const tool of order) {
      await coldPrep();
      await writeFile(context.touchedFile, original);
      const pathsBefore = tool === 'slipway' ? await streamPaths() : undefined;
      await settleDisk();
      const cold = await build(tool, 'cold', context.dir);
      const paths = pathsBefore && (await streamPaths());
      const carried = paths && pathsBefore ? `; tunnel streams to the agent: ${paths.lane - pathsBefore.lane} on lanes, ${paths.link - pathsBefore.link} on the link` : '';
      progress(`run ${run + 1}/${config.runs} ${tool} cold: ${cold.wallSeconds.toFixed(2)} s (load average ${loadavg()}${carried})`);
      await writeFile(context.touchedFile, Buffer.concat([Buffer.from(`// changed in run ${run} for ${tool}\n`), original]));
      await settleDisk();
      const incremental = await build(tool, 'incremental', context.dir);
      progress(`run ${run + 1}/${config.runs} ${tool} incremental: ${incremental.wallSeconds.toFixed(2)} s (load average ${loadavg()})`);
      for (const s of [cold, incremental]) {
        const copy = [...s.steps.entries()].find(([name]) => name.includes('COPY . /ctx/'));
        if (!copy || copy[1].cached) throw new BenchError('MEASUREMENT_FAILED', `${tool} ${s.kind}: the COPY of the context did not run (${copy ? 'CACHED' : 'no such step'}): nothing would be compared`);
      }
      samples.push(cold, incremental);
    }
  }

  const env = environment(REPO_ROOT);
  process.stdout.write(
    [
      '',
      `Slipway build benchmark: ${startedAt.toISOString()}, node ${env.node}, ${env.cpus} CPUs (${env.cpuModel}), commit ${env.gitCommit ?? '?'}`,
      `load average (1/5/15 min) at start ${loadAtStart}, at end ${loadavg()} (the machine may be shared: figures move with it)`,
      `context: ${context.files} files, ${(context.bytes / 1e6).toFixed(1)} MB (${config.smallFiles} small files of 200 B-4 KiB in 1,000 nested folders, ` +
        `${config.largeFiles} x ${(config.largeFileBytes / 1e6).toFixed(0)} MB random; plus busybox, a .dockerignore'd 1 MB folder), seed ${config.seed}`,
      `Dockerfile: FROM scratch, COPY busybox, COPY . /ctx/, RUN counting the files; builder: dockerd 20.10's BuildKit, ${config.runs} runs, order alternating`,
      `docker: DOCKER_BUILDKIT=1 /usr/bin/docker build straight to dockerd's socket; the result is exported into dockerd's image store (-t ${IMAGE}).`,
      `slipway: slipway build through a gateway and an agent (dockerd mode), each its own process on TLS loopback; no --output: the result stays in`,
      `  the builder's cache (no export step, which docker build does pay). CLI: ${cli.description}.`,
      `cold: builder cache pruned (POST /build/prune?all=1), image removed, --no-cache; incremental: one small file changed after the cold build; every build starts after sync(1), on a quiet disk.`,
      '',
      formatBuildBench(samples),
      '',
    ].join('\n'),
  );
  for (const v of verdicts(samples)) process.stdout.write(`${v.kind}: slipway/docker median wall time ${v.ratio.toFixed(2)}x (target at most ${TARGET_RATIO}x): ${v.ratio <= TARGET_RATIO ? 'met' : 'NOT met'}\n`);
  return 0;
}

let config: BuildBenchConfig;
try {
  config = loadBuildBenchConfig(process.env, argv);
} catch (err) {
  const error = toBenchError(err);
  process.stderr.write(`bench: ${error.message}\n`);
  process.exit(exitCodeOf(error.code));
}

main(config).then(
  async (code) => {
    await cleanup();
    process.exit(code);
  },
  async (err: unknown) => {
    if (interrupted) return;
    const error = toBenchError(err);
    process.stderr.write(`bench: error (${error.code}): ${error.message}\n`);
    await cleanup();
    process.exit(exitCodeOf(error.code));
  },
);
