// RedisIdentityStore on a real redis-server and on a 3-master Redis Cluster: the same contract as
// the in-process store.
import { after, before } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { RedisIdentityStore } from '@slipway/gateway';
import { identityStoreContract } from '@slipway/gateway/test-support';
import { startRedis, startRedisCluster, type RedisCluster, type RedisServer } from '@slipway/e2e';

let redis: RedisServer;
let cluster: RedisCluster;
let n = 0;

before(async () => {
  redis = await startRedis();
  cluster = await startRedisCluster({ masters: 3 });
});

after(async () => {
  await redis.stop();
  await cluster.stop();
});

identityStoreContract('RedisIdentityStore on redis-server', async () => {
  const store = new RedisIdentityStore({ client: new Redis(redis.url, { maxRetriesPerRequest: 1 }), keyPrefix: `id${++n}:` });
  return { store, cleanup: () => store.close() };
});

identityStoreContract('RedisIdentityStore on a Redis Cluster', async () => {
  const store = new RedisIdentityStore({ client: new Cluster([cluster.nodes[n % 3]!], { redisOptions: { maxRetriesPerRequest: 1 } }), keyPrefix: `idc${++n}:` });
  return { store, cleanup: () => store.close() };
});
