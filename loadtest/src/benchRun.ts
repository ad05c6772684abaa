// The measurements, in order: warm-up (a first transfer each way, reported apart), uploads,
// downloads, open latency at concurrency 1, then at the configured concurrency; each across every
// target before the next, all through the same bench client process against the same upstream.
// Around each measurement the CPU time of every process is read, so the results say where the
// cycles went.
import type { BenchClient } from './benchClient.js';
import type { BenchConfig } from './benchConfig.js';
import { BenchError } from './benchError.js';
import type { BenchStack, BenchTarget, StackRole, TargetName } from './benchStack.js';
import { summarize, type LatencySummary } from './latencyStats.js';
import { processCpuSeconds } from './processCpu.js';
import type { BenchProcess } from './benchProcess.js';

export type CpuRole = StackRole | 'client';

export interface TransferMeasurement {
  target: TargetName;
  direction: 'upload' | 'download';
  bytes: number;
  bytesVerified: number;
  seconds: number;
  mbPerSec: number;
  /** CPU seconds each process used during the measurement (absent where /proc is missing). */
  cpuSeconds: Partial<Record<CpuRole, number>>;
}

export interface LatencyMeasurement extends LatencySummary {
  target: TargetName;
  concurrency: number;
  roundsPlanned: number;
  roundsRun: number;
  stoppedByBudget: boolean;
  wallSeconds: number;
  cpuSeconds: Partial<Record<CpuRole, number>>;
}

export interface Measurements {
  /** The first transfer each way on each target, `warmupBytes` long: not the throughput that counts. */
  warmups: TransferMeasurement[];
  transfers: TransferMeasurement[];
  latencies: LatencyMeasurement[];
}

export async function runBench(config: BenchConfig, stack: BenchStack, client: BenchClient, progress: (line: string) => void): Promise<Measurements> {
  const watched = new Map<CpuRole, BenchProcess>([...stack.processes, ['client', client.process]]);
  const cpuNow = (): Map<CpuRole, number | undefined> => new Map([...watched].map(([role, p]) => [role, processCpuSeconds(p.pid)]));
  const cpuSince = (before: Map<CpuRole, number | undefined>): Partial<Record<CpuRole, number>> => {
    const out: Partial<Record<CpuRole, number>> = {};
    for (const [role, after] of cpuNow()) {
      const b = before.get(role);
      if (after !== undefined && b !== undefined) out[role] = Number((after - b).toFixed(2));
    }
    return out;
  };
  const checkAlive = (): void => {
    const dead = stack.deadProcess() ?? (client.process.exitStatus !== undefined ? client.process : undefined);
    if (dead) throw new BenchError('PROCESS_FAILED', `${dead.name} is no longer running\n${dead.describeExit()}`);
  };

  const transfer = async (target: BenchTarget, direction: 'upload' | 'download', bytes: number, what: string): Promise<TransferMeasurement> => {
    checkAlive();
    const before = cpuNow();
    const r = await client.transfer({ endpoint: target.endpoint, direction, bytes, timeoutMs: config.transferTimeoutMs });
    const m: TransferMeasurement = { target: target.name, ...r, cpuSeconds: cpuSince(before) };
    progress(`${what.padEnd(8)} ${target.name.padEnd(9)} ${m.mbPerSec.toFixed(1)} MB/s (${(m.bytes / 1e6).toFixed(1)} MB in ${m.seconds.toFixed(2)} s)`);
    return m;
  };

  const warmups: TransferMeasurement[] = [];
  for (const target of stack.targets) {
    checkAlive();
    progress(`warming up ${target.name}`);
    await client.openLatency({ endpoint: target.endpoint, concurrency: 1, rounds: 20, budgetMs: 5_000, sampleTimeoutMs: config.sampleTimeoutMs });
    await client.openLatency({ endpoint: target.endpoint, concurrency: config.concurrency, rounds: 1, budgetMs: 5_000, sampleTimeoutMs: config.sampleTimeoutMs });
    for (const direction of ['upload', 'download'] as const) warmups.push(await transfer(target, direction, config.warmupBytes, `first ${direction === 'upload' ? 'up' : 'down'}`));
  }

  const transfers: TransferMeasurement[] = [];
  for (const direction of ['upload', 'download'] as const) {
    const bytes = direction === 'upload' ? config.uploadBytes : config.downloadBytes;
    for (const target of stack.targets) transfers.push(await transfer(target, direction, bytes, direction));
  }

  const latencies: LatencyMeasurement[] = [];
  const plans: Array<{ concurrency: number; rounds: number }> = [
    { concurrency: 1, rounds: config.latencySamples },
    { concurrency: config.concurrency, rounds: config.rounds },
  ];
  for (const plan of plans) {
    for (const target of stack.targets) {
      checkAlive();
      latencies.push(await measureLatency(client, target, plan, config, cpuNow, cpuSince));
      const m = latencies[latencies.length - 1]!;
      progress(
        `open c=${String(plan.concurrency).padEnd(4)} ${target.name.padEnd(9)} p50 ${m.p50Ms.toFixed(3)} ms  p99 ${m.p99Ms.toFixed(3)} ms  ` +
          `(${m.samples} samples in ${m.wallSeconds.toFixed(1)} s${m.stoppedByBudget ? `, time budget reached after ${m.roundsRun} of ${m.roundsPlanned} rounds` : ''})`,
      );
    }
  }
  checkAlive();
  return { warmups, transfers, latencies };
}

async function measureLatency(
  client: BenchClient,
  target: BenchTarget,
  plan: { concurrency: number; rounds: number },
  config: BenchConfig,
  cpuNow: () => Map<CpuRole, number | undefined>,
  cpuSince: (before: Map<CpuRole, number | undefined>) => Partial<Record<CpuRole, number>>,
): Promise<LatencyMeasurement> {
  const before = cpuNow();
  const r = await client.openLatency({
    endpoint: target.endpoint,
    concurrency: plan.concurrency,
    rounds: plan.rounds,
    budgetMs: config.phaseBudgetMs,
    sampleTimeoutMs: config.sampleTimeoutMs,
  });
  const cpuSeconds = cpuSince(before);
  return {
    target: target.name,
    concurrency: r.concurrency,
    roundsPlanned: r.roundsPlanned,
    roundsRun: r.roundsRun,
    stoppedByBudget: r.stoppedByBudget,
    wallSeconds: r.wallSeconds,
    ...summarize(r.samplesMs),
    cpuSeconds,
  };
}
