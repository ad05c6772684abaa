import { Redis, Cluster } from 'ioredis';
import type { GatewayConfig } from '../config.js';
import { MemoryRoutingTable } from './memoryRoutingTable.js';
import { RedisRoutingTable } from './redisRoutingTable.js';
import type { RoutingTable } from './routingTable.js';

// The routing table the gateway program runs on: Redis (or a Redis Cluster) when configured, so
// replicas share it; otherwise the in-process table, good for exactly one replica.
export function routingTableFromConfig(config: GatewayConfig): RoutingTable {
  const redis = config.redis;
  if (redis === undefined) return new MemoryRoutingTable();
  const url = new URL(redis.url);
  const tls = url.protocol === 'rediss:' ? {} : undefined;
  const keyPrefix = `${redis.keyPrefix}:`;
  if (redis.cluster) {
    const client = new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
      redisOptions: {
        username: url.username ? decodeURIComponent(url.username) : undefined,
        password: url.password ? decodeURIComponent(url.password) : undefined,
        tls,
      },
      // ElastiCache and most managed clusters announce hostnames that need TLS SNI as given.
      dnsLookup: (address, callback) => callback(null, address),
    });
    return new RedisRoutingTable({ client, keyPrefix });
  }
  const client = new Redis(redis.url, { tls, maxRetriesPerRequest: 2 });
  return new RedisRoutingTable({ client, keyPrefix });
}
