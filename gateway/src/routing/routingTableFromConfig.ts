import type { GatewayConfig } from '../config.js';
import { redisClientFromConfig } from '../redisClientFromConfig.js';
import { MemoryRoutingTable } from './memoryRoutingTable.js';
import { RedisRoutingTable } from './redisRoutingTable.js';
import type { RoutingTable } from './routingTable.js';

// The routing table the gateway program runs on: Redis (or a Redis Cluster) when configured, so
// replicas share it; otherwise the in-process table, good for exactly one replica.
export function routingTableFromConfig(config: GatewayConfig): RoutingTable {
  const redis = config.redis;
  if (redis === undefined) return new MemoryRoutingTable();
  return new RedisRoutingTable({ client: redisClientFromConfig(redis), keyPrefix: `${redis.keyPrefix}:` });
}
