import { BenchError } from './benchError.js';
import { connectEndpoint, describeEndpoint, type BenchEndpoint } from './benchEndpoint.js';
import { Mode } from './upstreamProtocol.js';

export interface OpenLatencyOptions {
  /** Connections started at the same moment in each round. */
  concurrency: number;
  rounds: number;
  /** No new round starts after this much time; at least one round always runs. */
  budgetMs: number;
  sampleTimeoutMs: number;
}

export interface OpenLatencyResult {
  concurrency: number;
  roundsPlanned: number;
  roundsRun: number;
  /** True when the time budget, not the round count, ended the measurement. */
  stoppedByBudget: boolean;
  wallSeconds: number;
  samplesMs: number[];
}

const PAYLOAD = 0x78; // 'x'
const PROBE = Buffer.from([Mode.echo, PAYLOAD]);

// Stream-open latency: from starting to connect until the first byte of the echo of a 1-byte
// write comes back. Through Slipway that covers the proxy accepting, the tunnel stream opening
// (authentication, agent pick, the agent dialing the upstream) and one round trip on the path.
// The connection is closed cleanly afterwards, outside the sample.
export function openSample(endpoint: BenchEndpoint, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connectEndpoint(endpoint);
    let latencyMs: number | undefined;
    let failure: BenchError | undefined;
    const fail = (error: BenchError): void => {
      failure ??= error;
      socket.destroy();
    };
    const timer = setTimeout(() => fail(new BenchError('TIMEOUT', `no echo via ${describeEndpoint(endpoint)} within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err) => fail(new BenchError('MEASUREMENT_FAILED', `echo via ${describeEndpoint(endpoint)} failed: ${err.message}`, { cause: err })));
    socket.on('data', (chunk: Buffer) => {
      if (latencyMs !== undefined) return fail(new BenchError('PROTOCOL', `echo via ${describeEndpoint(endpoint)} sent more than the 1 byte written`));
      latencyMs = performance.now() - started;
      if (chunk.length !== 1 || chunk[0] !== PAYLOAD) {
        return fail(new BenchError('PROTOCOL', `echo via ${describeEndpoint(endpoint)} returned ${JSON.stringify(chunk.toString('latin1'))}, expected "x"`));
      }
      socket.end();
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (failure) return reject(failure);
      if (latencyMs === undefined) return reject(new BenchError('MEASUREMENT_FAILED', `connection via ${describeEndpoint(endpoint)} closed before the echo came back`));
      resolve(latencyMs);
    });
    socket.write(PROBE);
  });
}

// Rounds of `concurrency` connections started together; each round waits for all of its
// connections to finish, so at most `concurrency` are ever open.
export async function measureOpenLatency(endpoint: BenchEndpoint, options: OpenLatencyOptions): Promise<OpenLatencyResult> {
  const started = performance.now();
  const samplesMs: number[] = [];
  let roundsRun = 0;
  while (roundsRun < options.rounds) {
    if (roundsRun > 0 && performance.now() - started > options.budgetMs) break;
    const round = await Promise.allSettled(Array.from({ length: options.concurrency }, () => openSample(endpoint, options.sampleTimeoutMs)));
    roundsRun++;
    const failed = round.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) {
      const first = failed[0]!.reason as Error;
      throw new BenchError(
        'MEASUREMENT_FAILED',
        `${failed.length} of ${options.concurrency} connections in round ${roundsRun} at concurrency ${options.concurrency} failed; first: ${first.message}`,
        { cause: first },
      );
    }
    for (const r of round) samplesMs.push((r as PromiseFulfilledResult<number>).value);
  }
  return {
    concurrency: options.concurrency,
    roundsPlanned: options.rounds,
    roundsRun,
    stoppedByBudget: roundsRun < options.rounds,
    wallSeconds: (performance.now() - started) / 1000,
    samplesMs,
  };
}
