// RedisRoutingTable on a real 3-master Redis Cluster: the shared contract with three tables, each
// with its own cluster client seeded with a different node, and proof that the key layout keeps
// each platform in one slot (which is what lets the Lua scripts run there at all).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Cluster } from 'ioredis';
import { RedisRoutingTable } from '@slipway/gateway';
import { routingTableContract } from '@slipway/gateway/test-support';
import { redisCommand, startRedisCluster, type RedisCluster } from '../src/index.js';

let cluster: RedisCluster | undefined;
let fixtures = 0;

before(async () => {
  cluster = await startRedisCluster({ masters: 3 });
});

after(async () => {
  await cluster?.stop();
});

function nodes(): RedisCluster['nodes'] {
  assert.ok(cluster, 'the cluster started in before()');
  return cluster.nodes;
}

function connect(seed: number): Cluster {
  const all = nodes();
  return new Cluster([all[seed % all.length] as { host: string; port: number }], { redisOptions: { maxRetriesPerRequest: 1 } });
}

routingTableContract('RedisRoutingTable on a 3-master Redis Cluster, 3 replicas', async () => {
  const keyPrefix = `contract${++fixtures}:`;
  const tables = [0, 1, 2].map((i) => new RedisRoutingTable({ client: connect(i), keyPrefix }));
  return { tables, cleanup: async () => void (await Promise.all(tables.map((t) => t.close()))) };
});

describe('RedisRoutingTable on a Redis Cluster', () => {
  it('the cluster runs a script on undeclared keys of its declared slot and refuses other slots', async () => {
    const client = connect(0);
    try {
      const sameSlot = "redis.call('SET', KEYS[1] .. ':more', ARGV[1]); return redis.call('GET', KEYS[1] .. ':more')";
      assert.equal(await client.eval(sameSlot, 1, 'probe:{t}:k', 'v'), 'v');
      const otherSlot = "return redis.call('GET', 'probe:{elsewhere}:k')";
      await assert.rejects(client.eval(otherSlot, 1, 'probe:{t}:k'), /slot|cluster|non local/i);
    } finally {
      await client.quit();
    }
  });

  it('keeps all keys of a platform in one slot on one node, and the platforms apart', async () => {
    const client = connect(1);
    const table = new RedisRoutingTable({ client, keyPrefix: 'layout:' });
    try {
      const now = 1_700_000_000_000;
      for (const platform of ['linux/amd64', 'linux/arm64'] as const) {
        for (const id of ['b1', 'b2']) {
          await table.registerBuilder({ agentId: id, platform, fleet: 'local', capacity: 1, gatewayId: 'gw', nowMs: now, leaseMs: 10_000 });
        }
        await table.acquire({ buildId: 'x', project: 'p', platform, nowMs: now, spillAfterMs: 1, allocationLeaseMs: 10_000 });
        await table.acquire({ buildId: 'y', project: 'q', platform, nowMs: now, spillAfterMs: 1, allocationLeaseMs: 10_000 });
        await table.acquire({ buildId: 'z', project: 'r', platform, nowMs: now, spillAfterMs: 1, allocationLeaseMs: 10_000 });
        await table.endAllocation('x', platform, 'finished', '', now + 1);
      }
      await table.announceReplica('gw', 'https://gw:9443', now, 60_000);
      await table.acquireLeadership('fleet', 'gw', now, 60_000);

      // Every key the table wrote, grouped by hash tag: the slots and the nodes it landed on.
      const byTag = new Map<string, { slots: Set<number>; ports: Set<number>; keys: string[] }>();
      for (const node of nodes()) {
        const keys = await redisCommand(node.port, ['KEYS', 'layout:*']);
        assert.ok(Array.isArray(keys));
        for (const key of keys as string[]) {
          const tag = /^layout:(\{[^}]*\})/.exec(key)?.[1];
          assert.ok(tag, `${key} carries a hash tag right after the prefix`);
          const slot = await redisCommand(node.port, ['CLUSTER', 'KEYSLOT', key]);
          const entry = byTag.get(tag) ?? { slots: new Set(), ports: new Set(), keys: [] };
          entry.slots.add(Number(slot));
          entry.ports.add(node.port);
          entry.keys.push(key);
          byTag.set(tag, entry);
        }
      }
      assert.deepEqual([...byTag.keys()].sort(), ['{control}', '{linux/amd64}', '{linux/arm64}']);
      for (const [tag, e] of byTag) {
        assert.equal(e.slots.size, 1, `${tag}: keys ${e.keys.join(' ')} span slots ${[...e.slots].join(', ')}`);
        assert.equal(e.ports.size, 1, `${tag}: keys on one node`);
      }
      const amd = byTag.get('{linux/amd64}');
      const arm = byTag.get('{linux/arm64}');
      assert.ok(amd && arm);
      // Placement wrote builders, bindings, projects, allocations and demands under the tag.
      for (const part of ['builder:b1', 'binding:', 'project:p', 'alloc:x', 'allocs:open', 'leases']) {
        assert.ok(amd.keys.some((k) => k.includes(part)), `a ${part} key under {linux/amd64}: ${amd.keys.join(' ')}`);
      }
      assert.notDeepEqual([...amd.slots], [...arm.slots], 'the two platforms hash to different slots');
      const slotOf = async (tag: string): Promise<number> => Number(await redisCommand(nodes()[0]?.port ?? 0, ['CLUSTER', 'KEYSLOT', tag]));
      assert.deepEqual([...amd.slots], [await slotOf('{linux/amd64}')]);
      assert.deepEqual([...arm.slots], [await slotOf('{linux/arm64}')]);
    } finally {
      await table.close();
    }
  });
});
