import { Redis } from 'ioredis';
import { RedisRoutingTable, type RoutingTable } from '@slipway/gateway';
import type { PlacementConfig } from './placementConfig.js';
import { PlacementLoad, type LoadRunResult } from './placementLoad.js';
import type { RedisRun } from './placementResults.js';
import { processCpuSeconds } from './processCpu.js';
import { startRedisServer, type RedisServer } from './redisServer.js';
import { SeededRandom } from './seededRandom.js';
import { ZipfSampler } from './zipfSampler.js';

// Part 2 of bench:placement: a redis-server of its own, one RedisRoutingTable per gateway
// replica, then the open-loop runs at the target rate and a closed-loop run.

const PLATFORM = 'linux/amd64';
const LEASE_MS = 15_000;
// The gateway's default heartbeat interval: each replica renews a builder this often.
const RENEW_INTERVAL_MS = 5_000;
const REAP_INTERVAL_MS = 1_000;

/** What has to be closed whichever way the run ends. */
export interface RedisHeld {
  server?: RedisServer;
  tables?: RoutingTable[];
  load?: PlacementLoad;
}

export async function runRedisPlacement(
  config: PlacementConfig,
  held: RedisHeld,
  progress: (line: string) => void,
): Promise<{ version: string | undefined; runs: RedisRun[] }> {
  progress('starting redis-server');
  const server = await startRedisServer({ command: config.redisServer, env: config.childBaseEnv, echo: config.verbose });
  held.server = server;
  const clients = Array.from({ length: config.redisReplicas }, () => new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 2 }));
  held.tables = clients.map((client) => new RedisRoutingTable({ client, keyPrefix: 'bench:' }));
  const info = await clients[0]!.info('server');
  const version = /redis_version:(\S+)/.exec(info)?.[1];
  progress(`registering ${config.redisBuilders} builders with ${config.redisReplicas} replicas`);
  const load = await PlacementLoad.start({
    tables: held.tables,
    gatewayIds: held.tables.map((_, i) => `bench-gw-${i}`),
    platform: PLATFORM,
    builders: config.redisBuilders,
    capacity: config.redisCapacity,
    warmProjects: new ZipfSampler(config.redisProjects, config.zipfExponent),
    rng: new SeededRandom(config.seed).fork(5),
    spillAfterMs: config.spillAfterMs,
    leaseMs: LEASE_MS,
    renewIntervalMs: RENEW_INTERVAL_MS,
    reapIntervalMs: REAP_INTERVAL_MS,
    runId: `bench${config.seed}`,
  });
  held.load = load;

  const measure = async (label: string, coldShare: number, run: () => Promise<LoadRunResult>): Promise<RedisRun> => {
    progress(`redis: ${label}`);
    const redisBefore = processCpuSeconds(server.process.pid);
    const clientBefore = process.cpuUsage();
    const result = await run();
    const redisAfter = processCpuSeconds(server.process.pid);
    const client = process.cpuUsage(clientBefore);
    return {
      label,
      coldShare,
      result,
      redisCpuSeconds: redisBefore === undefined || redisAfter === undefined ? undefined : redisAfter - redisBefore,
      clientCpuSeconds: (client.user + client.system) / 1e6,
    };
  };
  const rate = config.redisRatePerSec;
  const cold = config.redisColdShare;
  const coldPct = `${(cold * 100).toFixed(0)}% new`;
  const runs: RedisRun[] = [];
  if (config.redisWarmupMs > 0) {
    // Binds the warm projects' builders, loads the scripts into Redis and warms the JIT; not reported.
    progress(`redis: warm-up, open loop ${rate}/s for ${config.redisWarmupMs} ms`);
    await load.openLoop(rate, config.redisWarmupMs, cold);
  }
  runs.push(await measure(`open ${rate}/s, ${coldPct}`, cold, () => load.openLoop(rate, config.redisMs, cold)));
  if (cold > 0) runs.push(await measure(`open ${rate}/s, warm only`, 0, () => load.openLoop(rate, config.redisMs, 0)));
  if (config.redisSerialMs > 0) {
    runs.push(await measure(`closed c=1, ${coldPct}`, cold, () => load.closedLoop(1, config.redisSerialMs, cold)));
  }
  if (config.redisClosedMs > 0) {
    runs.push(await measure(`closed c=${config.redisConcurrency}, ${coldPct}`, cold, () => load.closedLoop(config.redisConcurrency, config.redisClosedMs, cold)));
  }
  return { version, runs };
}

/** Stops the load, closes the tables (their connections) and stops redis-server. Idempotent. */
export async function closeRedisPlacement(held: RedisHeld): Promise<void> {
  const load = held.load;
  held.load = undefined;
  const tables = held.tables ?? [];
  held.tables = undefined;
  const server = held.server;
  held.server = undefined;
  try {
    await load?.stop();
  } finally {
    await Promise.all(tables.map((t) => t.close()));
    await server?.stop();
  }
}
