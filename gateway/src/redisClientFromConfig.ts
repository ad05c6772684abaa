import { Cluster, Redis } from 'ioredis';
import type { GatewayConfig } from './config.js';

/**
 * A connection to the configured Redis (or Redis Cluster): TLS for rediss://, credentials from
 * the URL. Each user (routing table, identity store) gets its own, and owns it.
 */
export function redisClientFromConfig(redis: NonNullable<GatewayConfig['redis']>): Redis | Cluster {
  const url = new URL(redis.url);
  const tls = url.protocol === 'rediss:' ? {} : undefined;
  if (!redis.cluster) return new Redis(redis.url, { tls, maxRetriesPerRequest: 2 });
  return new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
    redisOptions: {
      username: url.username ? decodeURIComponent(url.username) : undefined,
      password: url.password ? decodeURIComponent(url.password) : undefined,
      tls,
    },
    // ElastiCache and most managed clusters announce hostnames that need TLS SNI as given.
    dnsLookup: (address, callback) => callback(null, address),
  });
}
