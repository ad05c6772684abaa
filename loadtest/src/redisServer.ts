import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BenchError } from './benchError.js';
import { BenchProcess } from './benchProcess.js';
import { freeLoopbackPort } from './freePort.js';

// A throwaway redis-server for bench:placement: loopback only, no persistence (an RDB save or
// AOF fsync in the middle of a latency run would be measured as the routing table's latency).
// The e2e harness has its own; loadtest does not depend on @slipway/e2e.

const READY = /Ready to accept connections/;
const START_TIMEOUT_MS = 15_000;
// redis-server cannot listen on port 0: the port is picked first and may be taken in between.
const BIND_ATTEMPTS = 3;

export interface RedisServer {
  readonly port: number;
  readonly process: BenchProcess;
  /** Stops redis-server and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

export async function startRedisServer(opts: { command: string; env: Record<string, string>; echo: boolean }): Promise<RedisServer> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= BIND_ATTEMPTS; attempt++) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-bench-redis-'));
    const port = await freeLoopbackPort();
    const proc = new BenchProcess({
      name: `redis-server:${port}`,
      command: opts.command,
      args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
      cwd: dir,
      env: opts.env,
      echo: opts.echo,
    });
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        await proc.stop();
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    };
    try {
      await proc.waitForLine(READY, START_TIMEOUT_MS);
      return { port, process: proc, stop };
    } catch (err) {
      lastError = err;
      await stop();
      if (!/Address already in use/i.test(proc.output())) {
        throw new BenchError('PROCESS_FAILED', `could not start ${opts.command}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
  }
  throw new BenchError('PROCESS_FAILED', `redis-server lost the race for a free port ${BIND_ATTEMPTS} times`, { cause: lastError });
}
