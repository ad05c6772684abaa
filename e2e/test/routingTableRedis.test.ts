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
