import os from 'node:os';
import { mergeFlags, readInt, readEnum, parseHostPort, LogLevels, type Env, type LogLevel } from '@slipway/proto';
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
};

export const GATEWAY_FLAGS: Readonly<Record<string, string>> = FLAGS;

export function loadConfig(env: Env, argv: readonly string[] = []): GatewayConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, FLAGS, problems);
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
  const config: GatewayConfig = {
    listenHost: listen.host,
    listenPort: listen.port,
    tlsCertPath: required('SLIPWAY_TLS_CERT'),
    tlsKeyPath: required('SLIPWAY_TLS_KEY'),
    tokenIssuer: e['SLIPWAY_TOKEN_ISSUER'] || 'slipway',
    tokenJwksPath: required('SLIPWAY_TOKEN_JWKS'),
    gatewayId: e['SLIPWAY_GATEWAY_ID'] || `${os.hostname()}-${process.pid}`,
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    agentDescribeTimeoutMs: readInt(e, 'SLIPWAY_AGENT_DESCRIBE_TIMEOUT_MS', 10_000, 100, 600_000, problems),
    maxHeaderBytes: readInt(e, 'SLIPWAY_MAX_HEADER_BYTES', 16 * 1024, 1024, 1024 * 1024, problems),
    shutdownGraceMs: readInt(e, 'SLIPWAY_SHUTDOWN_GRACE_MS', 30_000, 0, 3_600_000, problems),
    logLevel: readEnum(e, 'SLIPWAY_LOG_LEVEL', LogLevels, 'info', problems),
  };
  if (problems.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `invalid gateway configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return config;
}
