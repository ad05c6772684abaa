// A throwaway Redis Cluster of N masters (no replicas) on 127.0.0.1, for code that must work
// on a cluster: each node is a startRedis() server with cluster mode on, joined by
// `redis-cli --cluster create`.
import { HarnessError } from './harnessError.js';
import { runCommand } from './processes.js';
import { redisCommand, startRedis, type RedisServer } from './redisServer.js';

const REDIS_CLI = 'redis-cli';
const DEFAULT_READY_TIMEOUT_MS = 30_000;
const POLL_MS = 100;
// Short: a node that dies is noticed within the time of one test, not the 15 s default.
const NODE_TIMEOUT_MS = 2_000;

export interface StartRedisClusterOptions {
  /** Master nodes; redis-cli needs at least 3. */
  masters: number;
  /** Limit for the nodes to start and the cluster to report cluster_state:ok everywhere. */
  readyTimeoutMs?: number;
}

export interface RedisCluster {
  readonly nodes: readonly { host: string; port: number }[];
  readonly servers: readonly RedisServer[];
  /** Stops every node and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

export async function startRedisCluster(opts: StartRedisClusterOptions): Promise<RedisCluster> {
  if (!Number.isInteger(opts.masters) || opts.masters < 3) {
    throw new HarnessError('INVALID_ARGUMENT', `a Redis Cluster needs at least 3 masters, got ${opts.masters}`);
  }
  const readyTimeoutMs = opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const servers: RedisServer[] = [];
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= Promise.all(servers.map((s) => s.stop())).then(() => undefined);
    return stopped;
  };
  try {
    for (let i = 0; i < opts.masters; i++) {
      servers.push(
        await startRedis({
          extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(NODE_TIMEOUT_MS)],
        }),
      );
    }
    const addrs = servers.map((s) => `127.0.0.1:${s.port}`);
    await runCommand(REDIS_CLI, ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], {
      timeoutMs: readyTimeoutMs,
    });
    const deadline = Date.now() + readyTimeoutMs;
    for (const s of servers) await waitForClusterOk(s, deadline, readyTimeoutMs);
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes: servers.map((s) => ({ host: '127.0.0.1', port: s.port })), servers, stop };
}

// `--cluster create` returns once slots are assigned; each node reports ok only after it has
// heard from the others, and a client arriving earlier gets CLUSTERDOWN.
async function waitForClusterOk(s: RedisServer, deadline: number, timeoutMs: number): Promise<void> {
  let last = '';
  for (;;) {
    const info = await redisCommand(s.port, ['CLUSTER', 'INFO']);
    last = typeof info === 'string' ? info : JSON.stringify(info);
    if (/^cluster_state:ok\r?$/m.test(last) && /^cluster_slots_ok:16384\r?$/m.test(last)) return;
    if (Date.now() >= deadline) {
      throw new HarnessError(
        'TIMEOUT',
        `redis cluster node 127.0.0.1:${s.port} did not report cluster_state:ok with all 16384 slots within ${timeoutMs} ms.\n` +
          `--- CLUSTER INFO ---\n${last}\n--- output ---\n${s.process.output()}`,
      );
    }
    await new Promise<void>((resolve) => setTimeout(resolve, POLL_MS));
  }
}
