// One timed build for the build bench: the client program (docker or slipway) run to its end
// under /usr/bin/time, its plain progress read for the builder's own step timings, and the CPU
// the daemon and Slipway's processes spent meanwhile.
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { BenchError } from './benchError.js';
import { PROBE_PREFIX, type ProbeReport } from './buildProbeLine.js';
import { processCpuSeconds } from './processCpu.js';

export type BuildTool = 'docker' | 'slipway';
export type BuildCase = 'cold' | 'incremental';

const BUILD_TIMEOUT_MS = 300_000;
const TIME_PREFIX = 'SLIPWAY_BENCH_TIME ';

export interface BuildSample {
  tool: BuildTool;
  kind: BuildCase;
  wallSeconds: number;
  /** The client's user + system CPU (children included), from /usr/bin/time. */
  clientCpuSeconds: number;
  /** CPU seconds of the other processes during the build. */
  cpu: Record<string, number>;
  /** The builder's view (plain progress): seconds of `load build context`, and what it said it received. */
  contextSeconds: number | undefined;
  contextTransferred: string | undefined;
  /** Seconds of every step, by name. */
  steps: Map<string, { seconds: number | undefined; cached: boolean }>;
  spawnedAt: number;
  /** Slipway only: what the probe loaded into the CLI saw. */
  probe: ProbeReport | undefined;
}

export interface BuildInvocation {
  tool: BuildTool;
  kind: BuildCase;
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** Processes whose CPU time is charged to the build (dockerd, gateway, agent). */
  watched: Record<string, number | undefined>;
}

/** Steps of plain progress (buildx's and docker's format): `#N name`, `#N DONE 1.2s`, `#N CACHED`. */
export function parsePlainProgress(text: string): Map<string, { seconds: number | undefined; cached: boolean; lines: string[] }> {
  const byNumber = new Map<string, { name: string; seconds: number | undefined; cached: boolean; lines: string[] }>();
  for (const line of text.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const [, n, rest] = m as unknown as [string, string, string];
    const step = byNumber.get(n);
    if (!step) {
      byNumber.set(n, { name: rest, seconds: undefined, cached: false, lines: [] });
      continue;
    }
    const done = /^DONE ([\d.]+)s$/.exec(rest);
    if (done) step.seconds = Number(done[1]);
    else if (rest === 'CACHED') step.cached = true;
    else step.lines.push(rest);
  }
  return new Map([...byNumber.values()].map((s) => [s.name, s]));
}

export async function runBuild(inv: BuildInvocation): Promise<BuildSample> {
  const cpuBefore = Object.fromEntries(Object.entries(inv.watched).map(([k, pid]) => [k, processCpuSeconds(pid) ?? 0]));
  const spawnedAt = Date.now();
  const started = performance.now();
  const child = spawn('/usr/bin/time', ['-f', `${TIME_PREFIX}%e %U %S`, inv.command, ...inv.args], { cwd: inv.cwd, env: inv.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), BUILD_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  }).finally(() => clearTimeout(timer));
  const wallSeconds = (performance.now() - started) / 1000;
  const cpu = Object.fromEntries(Object.entries(inv.watched).map(([k, pid]) => [k, (processCpuSeconds(pid) ?? 0) - cpuBefore[k]!]));
  if (code !== 0) {
    const tail = `${stdout}\n${stderr}`.split('\n').filter((l) => !l.startsWith(PROBE_PREFIX)).slice(-40).join('\n');
    throw new BenchError('MEASUREMENT_FAILED', `${inv.tool} build (${inv.kind}) exited with ${code ?? 'a signal'} after ${wallSeconds.toFixed(1)} s:\n${tail}`);
  }
  const time = stderr.split('\n').find((l) => l.startsWith(TIME_PREFIX));
  const [, user, system] = (time?.slice(TIME_PREFIX.length).split(' ') ?? []).map(Number);
  const probeLine = stderr.split('\n').find((l) => l.startsWith(PROBE_PREFIX));
  const probe = probeLine ? (JSON.parse(probeLine.slice(PROBE_PREFIX.length)) as ProbeReport) : undefined;
  const steps = parsePlainProgress(stderr);
  const context = [...steps.entries()].find(([name]) => name.endsWith('load build context'))?.[1];
  const transferred = context?.lines.map((l) => /transferring context: (\S+)/.exec(l)?.[1]).filter((v) => v !== undefined).pop();
  return {
    tool: inv.tool,
    kind: inv.kind,
    wallSeconds,
    clientCpuSeconds: (user ?? NaN) + (system ?? NaN),
    cpu,
    contextSeconds: context?.seconds,
    contextTransferred: transferred,
    steps,
    spawnedAt,
    probe,
  };
}
