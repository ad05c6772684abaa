import fs from 'node:fs';
import { Platforms, isPlatform, mergeFlags, readHttpsUrl, readEnum, readInt, LogLevels, type Env, type LogLevel, type Platform } from '@slipway/proto';
import { CliError } from './cliError.js';

export const Transports = ['auto', 'h2', 'websocket'] as const;
export type Transport = (typeof Transports)[number];

export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export interface CliConfig {
  gatewayUrl: URL;
  token: string;
  project: string | undefined;
  ca: Buffer | undefined;
  transport: Transport;
  platform: Platform;
  listen: ListenAddress[];
  connectTimeoutMs: number;
  /** How long to wait for a builder before giving up. */
  acquireTimeoutMs: number;
  /** `proxy` finishes its build this long after the last connection closed. */
  buildIdleMs: number;
  logLevel: LogLevel;
  // The whole environment, for proxy selection (HTTPS_PROXY, NO_PROXY, ...).
  env: Env;
}

const FLAGS: Record<string, string> = {
  '--gateway': 'SLIPWAY_GATEWAY',
  '--token': 'SLIPWAY_TOKEN',
  '--project': 'SLIPWAY_PROJECT',
  '--ca-cert': 'SLIPWAY_CA_CERT',
  '--transport': 'SLIPWAY_TRANSPORT',
  '--platform': 'SLIPWAY_PLATFORM',
  '--listen': 'SLIPWAY_LISTEN',
  '--connect-timeout-ms': 'SLIPWAY_CONNECT_TIMEOUT_MS',
  '--acquire-timeout-ms': 'SLIPWAY_ACQUIRE_TIMEOUT_MS',
  '--build-idle-ms': 'SLIPWAY_BUILD_IDLE_MS',
  '--log-level': 'SLIPWAY_LOG_LEVEL',
};

export const CLI_FLAGS: Readonly<Record<string, string>> = FLAGS;

export function parseListen(raw: string, problems: string[]): ListenAddress | undefined {
  if (raw.startsWith('unix://')) {
    const path = raw.slice('unix://'.length);
    if (!path.startsWith('/')) {
      problems.push(`--listen ${raw}: a unix socket needs an absolute path (unix:///path.sock)`);
      return undefined;
    }
    return { kind: 'unix', path };
  }
  const tcp = /^tcp:\/\/(?:\[([^\]]+)\]|([^:/]+)):(\d+)$/.exec(raw);
  if (tcp) {
    const port = Number(tcp[3]);
    if (port > 65535) {
      problems.push(`--listen ${raw}: port must be 0-65535`);
      return undefined;
    }
    return { kind: 'tcp', host: tcp[1] ?? tcp[2]!, port };
  }
  problems.push(`--listen must be unix:///PATH.sock or tcp://HOST:PORT; got '${raw}'`);
  return undefined;
}

export function loadConfig(env: Env, argv: readonly string[], needs: { listen: boolean }): CliConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, FLAGS, problems, { repeatable: new Set(['--listen']) });
  const gatewayUrl = readHttpsUrl(e, 'SLIPWAY_GATEWAY', '--gateway', problems);
  const token = e['SLIPWAY_TOKEN'] ?? '';
  if (!token) problems.push('SLIPWAY_TOKEN (or --token) is required');
  let ca: Buffer | undefined;
  const caPath = e['SLIPWAY_CA_CERT'];
  if (caPath) {
    try {
      ca = fs.readFileSync(caPath);
    } catch (err) {
      problems.push(`SLIPWAY_CA_CERT '${caPath}' cannot be read: ${(err as Error).message}`);
    }
  }
  const platformRaw = e['SLIPWAY_PLATFORM'];
  let platform: Platform = 'linux/amd64';
  if (!platformRaw) problems.push(`--platform is required; expected one of ${Platforms.join(', ')}`);
  else if (!isPlatform(platformRaw)) problems.push(`--platform must be one of ${Platforms.join(', ')}; got '${platformRaw}'`);
  else platform = platformRaw;
  const listen: ListenAddress[] = [];
  if (needs.listen) {
    const raw = (e['SLIPWAY_LISTEN'] ?? '').split(',').filter(Boolean);
    if (raw.length === 0) problems.push('--listen is required (unix:///PATH.sock or tcp://127.0.0.1:PORT; repeatable)');
    for (const r of raw) {
      const parsed = parseListen(r, problems);
      if (parsed) listen.push(parsed);
    }
  }
  const config: CliConfig = {
    gatewayUrl,
    token,
    project: e['SLIPWAY_PROJECT'] || undefined,
    ca,
    transport: readEnum(e, 'SLIPWAY_TRANSPORT', Transports, 'auto', problems),
    platform,
    listen,
    connectTimeoutMs: readInt(e, 'SLIPWAY_CONNECT_TIMEOUT_MS', 15_000, 100, 600_000, problems),
    acquireTimeoutMs: readInt(e, 'SLIPWAY_ACQUIRE_TIMEOUT_MS', 600_000, 100, 24 * 3_600_000, problems),
    buildIdleMs: readInt(e, 'SLIPWAY_BUILD_IDLE_MS', 30_000, 0, 24 * 3_600_000, problems),
    logLevel: readEnum(e, 'SLIPWAY_LOG_LEVEL', LogLevels, 'warn', problems),
    env,
  };
  if (problems.length > 0) throw new CliError('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return config;
}
