// RedisRoutingTable against a real redis-server: the shared contract with three tables, each on
// its own connection (three gateway replicas), plus what only the Redis table has to get right.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { GatewayError, RedisRoutingTable } from '@slipway/gateway';
import { routingTableContract } from '@slipway/gateway/test-support';
import { freePort, startRedis, type RedisServer } from '../src/index.js';

let redis: RedisServer | undefined;
let fixtures = 0;

before(async () => {
  redis = await startRedis();
});

after(async () => {
  await redis?.stop();
});

function server(): RedisServer {
  assert.ok(redis, 'redis-server started in before()');
  return redis;
}

function connect(): Redis {
  return new Redis(server().port, '127.0.0.1', { maxRetriesPerRequest: 1 });
}

// Each test gets its own key prefix, so tests never see each other's keys and need no FLUSHALL.
routingTableContract('RedisRoutingTable on redis-server, 3 replicas', async () => {
  const keyPrefix = `contract${++fixtures}:`;
  const tables = [0, 1, 2].map(() => new RedisRoutingTable({ client: connect(), keyPrefix }));
  return { tables, cleanup: async () => void (await Promise.all(tables.map((t) => t.close()))) };
});

describe('RedisRoutingTable specifics', () => {
  it('refuses a key prefix with hash-tag braces', () => {
    const client = new Redis({ lazyConnect: true });
    for (const keyPrefix of ['a{b', 'x}', '{p}']) {
      assert.throws(
        () => new RedisRoutingTable({ client, keyPrefix }),
        (err: unknown) => err instanceof GatewayError && err.code === 'CONFIG_INVALID',
      );
    }
    client.disconnect();
  });

  it('gives an ended allocation a TTL of the retention time, an open one none', async () => {
    const client = connect();
    const table = new RedisRoutingTable({ client, keyPrefix: 'retention:', endedAllocationRetentionMs: 120_000 });
    const probe = connect();
    try {
      const now = 1_700_000_000_000;
      await table.registerBuilder({
        agentId: 'b1', platform: 'linux/amd64', fleet: 'local', capacity: 1, gatewayId: 'gw', nowMs: now, leaseMs: 10_000,
      });
      const placed = await table.acquire({
        buildId: 'x', project: 'p', platform: 'linux/amd64', nowMs: now, spillAfterMs: 1, allocationLeaseMs: 10_000,
      });
      assert.equal(placed.state, 'active');
      const key = 'retention:{linux/amd64}:alloc:x';
      assert.equal(await probe.pttl(key), -1, 'an open allocation has no TTL');
      await table.endAllocation('x', 'linux/amd64', 'finished', '', now + 1);
      const ttl = await probe.pttl(key);
      assert.ok(ttl > 0 && ttl <= 120_000, `ended allocation TTL ${ttl} ms`);
      assert.equal((await table.getAllocation('x', 'linux/amd64'))?.state, 'finished');
      assert.equal(await probe.zscore('retention:{linux/amd64}:allocs:open', 'x'), null, 'no longer open');
    } finally {
      await table.close();
      probe.disconnect();
    }
  });

  it('keeps every key of a platform under its hash tag, and replicas/leadership under {control}', async () => {
    const client = connect();
    const table = new RedisRoutingTable({ client, keyPrefix: 'layout:' });
    const probe = connect();
    try {
      const now = 1_700_000_000_000;
      for (const platform of ['linux/amd64', 'linux/arm64'] as const) {
        await table.registerBuilder({ agentId: 'b1', platform, fleet: 'local', capacity: 1, gatewayId: 'gw', nowMs: now, leaseMs: 10_000 });
        await table.acquire({ buildId: 'x', project: 'p', platform, nowMs: now, spillAfterMs: 1, allocationLeaseMs: 10_000 });
        await table.acquire({ buildId: 'y', project: 'q', platform, nowMs: now, spillAfterMs: 1, allocationLeaseMs: 10_000 });
      }
      await table.announceReplica('gw', 'https://gw:9443', now, 1_000);
      await table.acquireLeadership('fleet', 'gw', now, 1_000);
      const keys = (await probe.keys('layout:*')).sort();
      assert.ok(keys.length > 10, `keys written: ${keys.join(' ')}`);
      for (const key of keys) {
        assert.match(key, /^layout:\{(linux\/amd64|linux\/arm64|control)\}:/, `${key} carries one of the table's hash tags`);
      }
      for (const tag of ['{linux/amd64}', '{linux/arm64}', '{control}']) {
        assert.ok(keys.some((k) => k.startsWith(`layout:${tag}:`)), `some key under ${tag}`);
      }
    } finally {
      await table.close();
      probe.disconnect();
    }
  });

  it('keeps the pool as a sorted set by idle-since, and acquire drops the lapsed entries it steps over', async () => {
    const table = new RedisRoutingTable({ client: connect(), keyPrefix: 'pool:' });
    const probe = connect();
    try {
      const now = 1_700_000_000_000;
      const reg = { platform: 'linux/amd64' as const, fleet: 'local', capacity: 1, gatewayId: 'gw', leaseMs: 10_000 };
      await table.registerBuilder({ ...reg, agentId: 'b1', nowMs: now });
      await table.registerBuilder({ ...reg, agentId: 'b2', nowMs: now + 100, leaseMs: 1_000_000 });
      await table.registerBuilder({ ...reg, agentId: 'b3', nowMs: now + 200, leaseMs: 1_000_000 });
      const key = 'pool:{linux/amd64}:pool:idle';
      assert.deepEqual(await probe.zrange(key, '0', '-1', 'WITHSCORES'), ['b1', String(now), 'b2', String(now + 100), 'b3', String(now + 200)]);
      const placed = await table.acquire({ buildId: 'x', project: 'p', platform: 'linux/amd64', nowMs: now + 10_000, spillAfterMs: 1, allocationLeaseMs: 10_000 });
      assert.equal(placed.state === 'active' ? placed.agentId : placed.state, 'b2');
      assert.deepEqual(await probe.zrange(key, '0', '-1'), ['b3'], 'b1 (lease passed) dropped, b2 bound');
      await table.endAllocation('x', 'linux/amd64', 'finished', '', now + 10_500);
      await table.releaseBinding('b2', 'linux/amd64');
      assert.deepEqual(await probe.zrange(key, '0', '-1', 'WITHSCORES'), ['b3', String(now + 200), 'b2', String(now + 10_500)], 'back, idle since its build ended');
      const b3 = await table.getBuilder('b3', 'linux/amd64');
      await table.unlinkBuilder('b3', 'linux/amd64', 'gw', b3?.epoch ?? -1);
      await table.reap('linux/amd64', now + 11_000);
      assert.deepEqual(await probe.zrange(key, '0', '-1'), ['b2'], 'reap drops a builder no replica links');
    } finally {
      await table.close();
      probe.disconnect();
    }
  });

  it('a placement from the pool runs as many Redis commands with 300 pool builders as with 3', async () => {
    // Counted by Redis itself (INFO commandstats counts the commands scripts run), so the
    // assertion is about work, not time. A server of its own: nothing else runs commands there.
    const own = await startRedis();
    const client = new Redis(own.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const probe = new Redis(own.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const table = new RedisRoutingTable({ client, keyPrefix: 'cost:' });
    try {
      const now = 1_700_000_000_000;
      const commandsOf = async (fn: () => Promise<unknown>): Promise<Record<string, number>> => {
        await probe.config('RESETSTAT');
        await fn();
        const counts: Record<string, number> = {};
        for (const m of (await probe.info('commandstats')).matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
          const command = m[1] as string;
          if (!['config', 'info', 'eval', 'evalsha', 'script'].includes(command.split('|')[0] as string)) counts[command] = Number(m[2]);
        }
        return counts;
      };
      const platformCost = async (platform: 'linux/amd64' | 'linux/arm64', builders: number): Promise<Record<string, number>> => {
        for (let i = 0; i < builders; i++) {
          await table.registerBuilder({ agentId: `b${i}`, platform, fleet: 'local', capacity: 1, gatewayId: 'gw', nowMs: now + i, leaseMs: 600_000 });
        }
        // Warm the script cache so both counts see the same EVALSHA path.
        await table.acquire({ buildId: 'first', project: 'first', platform, nowMs: now + 1_000, spillAfterMs: 1, allocationLeaseMs: 60_000 });
        return commandsOf(async () => {
          const r = await table.acquire({ buildId: 'x', project: 'new', platform, nowMs: now + 2_000, spillAfterMs: 1, allocationLeaseMs: 60_000 });
          assert.equal(r.state === 'active' ? r.agentId : r.state, 'b1', 'the idle-longest left after b0 went to the first project');
        });
      };
      const small = await platformCost('linux/amd64', 3);
      const large = await platformCost('linux/arm64', 300);
      assert.ok(Object.keys(small).length > 0, 'commands were counted');
      assert.deepEqual(large, small);
    } finally {
      await table.close();
      probe.disconnect();
      await own.stop();
    }
  });

  it('reports an unreachable Redis as ROUTING_UNAVAILABLE naming the operation', async () => {
    const port = await freePort();
    const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null });
    client.on('error', () => {
      // The rejected commands below carry the failure.
    });
    const table = new RedisRoutingTable({ client, keyPrefix: 'down:' });
    try {
      await assert.rejects(table.getBuilder('b1', 'linux/amd64'), (err: unknown) => {
        assert.ok(err instanceof GatewayError, String(err));
        assert.equal(err.code, 'ROUTING_UNAVAILABLE');
        assert.match(err.message, /getBuilder b1/);
        return true;
      });
      await assert.rejects(
        table.acquire({ buildId: 'x', project: 'p', platform: 'linux/amd64', nowMs: 1, spillAfterMs: 1, allocationLeaseMs: 1 }),
        (err: unknown) => err instanceof GatewayError && err.code === 'ROUTING_UNAVAILABLE' && /acquire x/.test(err.message),
      );
    } finally {
      await table.close();
    }
  });

  it('reports a Redis that goes away under a connected table as ROUTING_UNAVAILABLE', async () => {
    const own = await startRedis();
    const client = new Redis(own.port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {
      // The rejected command below carries the failure.
    });
    const table = new RedisRoutingTable({ client, keyPrefix: 'gone:' });
    try {
      await table.announceReplica('gw', 'https://gw:9443', 1, 1_000);
      assert.deepEqual([...(await table.listReplicas(2))], [['gw', 'https://gw:9443']]);
      await own.stop();
      await assert.rejects(table.listReplicas(3), (err: unknown) => err instanceof GatewayError && err.code === 'ROUTING_UNAVAILABLE');
    } finally {
      await table.close();
      await own.stop();
    }
  });
});
