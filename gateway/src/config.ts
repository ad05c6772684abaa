import os from 'node:os';
import { mergeFlags, readInt, readBool, readEnum, readHttpsUrl, parseHostPort, LogLevels, type Env, type LogLevel } from '@slipway/proto';
import { GatewayError } from './gatewayError.js';

export interface GatewayConfig {
  listenHost: string;
  listenPort: number;
  tlsCertPath: string;
  tlsKeyPath: string;
  tokenIssuer: string;
  tokenJwksPath: string;
  gatewayId: string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  agentDescribeTimeoutMs: number;
  maxHeaderBytes: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  /** Undefined: the in-process routing table (one replica only). */
  redis: { url: string; cluster: boolean; keyPrefix: string } | undefined;
  /** Private JWK (JSON file) that signs build tokens; undefined: a key made up at start (one replica only). */
  signingKeyPath: string | undefined;
  spillAfterMs: number;
  buildLeaseMs: number;
  buildHeartbeatIntervalMs: number;
  buildTokenTtlSec: number;
  builderLeaseMs: number;
  /** Where other replicas reach this one; undefined: https://<listen address>. */
  internalUrl: string | undefined;
  /** CA bundle for other replicas' certificates; undefined: the system's. */
  internalCaPath: string | undefined;
}


const FLAGS: Record<string, string> = {
  '--listen': 'SLIPWAY_LISTEN',
  '--tls-cert': 'SLIPWAY_TLS_CERT',
  '--tls-key': 'SLIPWAY_TLS_KEY',
  '--token-issuer': 'SLIPWAY_TOKEN_ISSUER',
  '--token-jwks': 'SLIPWAY_TOKEN_JWKS',
  '--gateway-id': 'SLIPWAY_GATEWAY_ID',
  '--heartbeat-interval-ms': 'SLIPWAY_HEARTBEAT_INTERVAL_MS',
  '--heartbeat-timeout-ms': 'SLIPWAY_HEARTBEAT_TIMEOUT_MS',
  '--agent-describe-timeout-ms': 'SLIPWAY_AGENT_DESCRIBE_TIMEOUT_MS',
  '--max-header-bytes': 'SLIPWAY_MAX_HEADER_BYTES',
  '--shutdown-grace-ms': 'SLIPWAY_SHUTDOWN_GRACE_MS',
  '--log-level': 'SLIPWAY_LOG_LEVEL',
  '--redis-url': 'SLIPWAY_REDIS_URL',
  '--redis-cluster': 'SLIPWAY_REDIS_CLUSTER',
  '--redis-key-prefix': 'SLIPWAY_REDIS_KEY_PREFIX',
  '--signing-key': 'SLIPWAY_SIGNING_KEY',
  '--spill-after-ms': 'SLIPWAY_SPILL_AFTER_MS',
  '--build-lease-ms': 'SLIPWAY_BUILD_LEASE_MS',
  '--build-heartbeat-interval-ms': 'SLIPWAY_BUILD_HEARTBEAT_INTERVAL_MS',
  '--build-token-ttl-sec': 'SLIPWAY_BUILD_TOKEN_TTL_SEC',
  '--builder-lease-ms': 'SLIPWAY_BUILDER_LEASE_MS',
  '--internal-url': 'SLIPWAY_INTERNAL_URL',
  '--internal-ca': 'SLIPWAY_INTERNAL_CA',
};

export const GATEWAY_FLAGS: Readonly<Record<string, string>> = FLAGS;

function readRedis(e: Record<string, string | undefined>, problems: string[]): GatewayConfig['redis'] {
  const url = e['SLIPWAY_REDIS_URL'];
  const cluster = readBool(e, 'SLIPWAY_REDIS_CLUSTER', false, problems);
  const keyPrefix = e['SLIPWAY_REDIS_KEY_PREFIX'] || 'slipway';
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(keyPrefix)) {
    problems.push(`SLIPWAY_REDIS_KEY_PREFIX must be letters, digits and . _ : - (no braces: they would break hash tags); got '${keyPrefix.slice(0, 64)}'`);
  }
  if (url === undefined || url === '') {
    if (cluster) problems.push('SLIPWAY_REDIS_CLUSTER needs SLIPWAY_REDIS_URL (any node of the cluster)');
    return undefined;
  }
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    problems.push(`SLIPWAY_REDIS_URL must be a redis:// or rediss:// URL; got '${url.slice(0, 128)}'`);
    return undefined;
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    problems.push(`SLIPWAY_REDIS_URL must use redis:// or rediss:// (TLS); got '${parsed.protocol}'`);
  }
  return { url, cluster, keyPrefix };
}

export function loadConfig(env: Env, argv: readonly string[] = []): GatewayConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, FLAGS, problems, { boolean: new Set(['--redis-cluster']) });
  const required = (name: string): string => {
    const value = e[name];
    if (value === undefined || value === '') problems.push(`${name} is required`);
    return value ?? '';
  };
  const listen = parseHostPort(e['SLIPWAY_LISTEN'] ?? '0.0.0.0:443', 'SLIPWAY_LISTEN', '0.0.0.0', problems);
  const heartbeatIntervalMs = readInt(e, 'SLIPWAY_HEARTBEAT_INTERVAL_MS', 5_000, 50, 600_000, problems);
  const heartbeatTimeoutMs = readInt(e, 'SLIPWAY_HEARTBEAT_TIMEOUT_MS', 15_000, 100, 3_600_000, problems);
  if (heartbeatTimeoutMs <= heartbeatIntervalMs) {
    problems.push(
      `SLIPWAY_HEARTBEAT_TIMEOUT_MS (${heartbeatTimeoutMs}) must exceed SLIPWAY_HEARTBEAT_INTERVAL_MS (${heartbeatIntervalMs})`,
    );
  }
  const redis = readRedis(e, problems);
  const signingKeyPath = e['SLIPWAY_SIGNING_KEY'] || undefined;
  if (redis && !signingKeyPath) {
    problems.push('SLIPWAY_SIGNING_KEY is required with SLIPWAY_REDIS_URL: every replica must sign and verify build tokens with the same key');
  }
  const gatewayId = e['SLIPWAY_GATEWAY_ID'] || `${os.hostname()}-${process.pid}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/.test(gatewayId)) {
    problems.push(`SLIPWAY_GATEWAY_ID must be letters, digits and . _ : - (at most 63); got '${gatewayId.slice(0, 64)}'`);
  }
  const buildHeartbeatIntervalMs = readInt(e, 'SLIPWAY_BUILD_HEARTBEAT_INTERVAL_MS', 5_000, 50, 600_000, problems);
  const buildLeaseMs = readInt(e, 'SLIPWAY_BUILD_LEASE_MS', 30_000, 100, 3_600_000, problems);
  if (buildLeaseMs <= buildHeartbeatIntervalMs) {
    problems.push(`SLIPWAY_BUILD_LEASE_MS (${buildLeaseMs}) must exceed SLIPWAY_BUILD_HEARTBEAT_INTERVAL_MS (${buildHeartbeatIntervalMs})`);
  }
  const config: GatewayConfig = {
    listenHost: listen.host,
    listenPort: listen.port,
    tlsCertPath: required('SLIPWAY_TLS_CERT'),
    tlsKeyPath: required('SLIPWAY_TLS_KEY'),
    tokenIssuer: e['SLIPWAY_TOKEN_ISSUER'] || 'slipway',
    tokenJwksPath: required('SLIPWAY_TOKEN_JWKS'),
    gatewayId,
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    agentDescribeTimeoutMs: readInt(e, 'SLIPWAY_AGENT_DESCRIBE_TIMEOUT_MS', 10_000, 100, 600_000, problems),
    maxHeaderBytes: readInt(e, 'SLIPWAY_MAX_HEADER_BYTES', 16 * 1024, 1024, 1024 * 1024, problems),
    shutdownGraceMs: readInt(e, 'SLIPWAY_SHUTDOWN_GRACE_MS', 30_000, 0, 3_600_000, problems),
    logLevel: readEnum(e, 'SLIPWAY_LOG_LEVEL', LogLevels, 'info', problems),
    redis,
    signingKeyPath,
    spillAfterMs: readInt(e, 'SLIPWAY_SPILL_AFTER_MS', 30_000, 0, 3_600_000, problems),
    buildLeaseMs,
    buildHeartbeatIntervalMs,
    buildTokenTtlSec: readInt(e, 'SLIPWAY_BUILD_TOKEN_TTL_SEC', 3_600, 60, 86_400, problems),
    builderLeaseMs: readInt(e, 'SLIPWAY_BUILDER_LEASE_MS', heartbeatTimeoutMs, 100, 3_600_000, problems),
    internalUrl: e['SLIPWAY_INTERNAL_URL'] ? readHttpsUrl(e, 'SLIPWAY_INTERNAL_URL', '--internal-url', problems).origin : undefined,
    internalCaPath: e['SLIPWAY_INTERNAL_CA'] || undefined,
  };
  if (problems.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `invalid gateway configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return config;
}
