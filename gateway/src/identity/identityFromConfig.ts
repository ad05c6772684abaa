import { Cluster, Redis } from 'ioredis';
import type { GatewayConfig } from '../config.js';
import type { IdentityStore } from './identityStore.js';
import { MemoryIdentityStore } from './memoryIdentityStore.js';
import { RedisIdentityStore } from './redisIdentityStore.js';

// Where projects, tokens and trust policies live: Redis with the routing table when replicas
// share one, else this process (optionally kept in a file).
export function identityFromConfig(config: GatewayConfig): { store: IdentityStore } {
  let store: IdentityStore;
  const redis = config.redis;
  if (redis) {
    const url = new URL(redis.url);
    const tls = url.protocol === 'rediss:' ? {} : undefined;
    const client = redis.cluster
      ? new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
          redisOptions: {
            username: url.username ? decodeURIComponent(url.username) : undefined,
            password: url.password ? decodeURIComponent(url.password) : undefined,
            tls,
          },
          dnsLookup: (address, callback) => callback(null, address),
        })
      : new Redis(redis.url, { tls, maxRetriesPerRequest: 2 });
    store = new RedisIdentityStore({ client, keyPrefix: `${redis.keyPrefix}:` });
  } else {
    store = new MemoryIdentityStore(config.identityFile);
  }
  return { store };
}
