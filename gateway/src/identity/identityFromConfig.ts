import type { GatewayConfig } from '../config.js';
import { redisClientFromConfig } from '../redisClientFromConfig.js';
import type { IdentityStore } from './identityStore.js';
import { MemoryIdentityStore } from './memoryIdentityStore.js';
import { RedisIdentityStore } from './redisIdentityStore.js';

// Where projects, tokens and trust policies live: Redis with the routing table when replicas
// share one, else this process (optionally kept in a file).
export function identityFromConfig(config: GatewayConfig): { store: IdentityStore } {
  const redis = config.redis;
  if (redis) return { store: new RedisIdentityStore({ client: redisClientFromConfig(redis), keyPrefix: `${redis.keyPrefix}:` }) };
  return { store: new MemoryIdentityStore(config.identityFile) };
}
