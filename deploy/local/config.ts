import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LogLevels, Platforms, mergeFlags, parseHostPort, readEnum, type Env, type LogLevel, type Platform } from '@slipway/proto';
import { hostPlatform, parseUpstream } from '@slipway/agent';
import { DevLauncherError } from './devLauncherError.js';

export const DEFAULT_LISTEN = '127.0.0.1:8443';
export const BUILDKITD_SOCKET = '/run/buildkit/buildkitd.sock';
export const DOCKERD_SOCKET = '/var/run/docker.sock';
/** The docker-compose service name of the gateway; see `tlsName`. */
export const DEFAULT_TLS_NAME = 'gateway';

/** How the upstream was chosen: given on the command line, or found on this machine. */
export type UpstreamChoice = 'given' | 'buildkitd-socket-found' | 'dockerd-fallback';

export interface DevLauncherConfig {
  listenHost: string;
  listenPort: number;
  /** Absolute; holds `pki/`, `dev.env` and the compose agents' `compose-amd64.token`, `compose-arm64.token`. */
  dir: string;
  /** `KIND:ADDRESS`, already checked by the agent's parser. */
  upstream: string;
  upstreamChoice: UpstreamChoice;
  /** Set when the upstream is a unix socket that does not exist (yet); the launcher still starts. */
  upstreamSocketMissing: string | undefined;
  /** Extra DNS name in the dev server certificate, besides localhost, 127.0.0.1 and ::1. */
  tlsName: string;
  platform: Platform;
  logLevel: LogLevel;
}

const FLAGS: Record<string, string> = {
  '--listen': 'SLIPWAY_DEV_LISTEN',
  '--upstream': 'SLIPWAY_DEV_UPSTREAM',
  '--dir': 'SLIPWAY_DEV_DIR',
  '--tls-name': 'SLIPWAY_DEV_TLS_NAME',
  '--log-level': 'SLIPWAY_LOG_LEVEL',
};

export const DEV_LAUNCHER_FLAGS: Readonly<Record<string, string>> = FLAGS;

/** What loadConfig looks at on this machine; tests replace it. */
export interface HostProbe {
  socketExists(path: string): boolean;
  cwd: string;
  arch: string;
  /** The directory used when --dir is not given. */
  defaultDir: string;
}

// deploy/local/ -> the repository root.
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const defaultProbe: HostProbe = {
  socketExists: (p) => fs.existsSync(p),
  cwd: process.cwd(),
  arch: process.arch,
  defaultDir: path.join(REPO_ROOT, '.slipway'),
};

const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function loadConfig(env: Env, argv: readonly string[] = [], probe: HostProbe = defaultProbe): DevLauncherConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, FLAGS, problems);

  const listen = parseHostPort(e['SLIPWAY_DEV_LISTEN'] || DEFAULT_LISTEN, '--listen (SLIPWAY_DEV_LISTEN)', '127.0.0.1', problems);

  const rawDir = e['SLIPWAY_DEV_DIR'];
  const dir = rawDir ? path.resolve(probe.cwd, rawDir) : probe.defaultDir;

  // Given: used as is. Otherwise BuildKit's own socket when it is there, else the Docker Engine
  // socket even when it is missing, so that starting dockerd later is all it takes.
  let upstream = e['SLIPWAY_DEV_UPSTREAM'] ?? '';
  let upstreamChoice: UpstreamChoice = 'given';
  if (upstream === '') {
    if (probe.socketExists(BUILDKITD_SOCKET)) {
      upstream = `buildkitd:unix://${BUILDKITD_SOCKET}`;
      upstreamChoice = 'buildkitd-socket-found';
    } else {
      upstream = `dockerd:unix://${DOCKERD_SOCKET}`;
      upstreamChoice = 'dockerd-fallback';
    }
  }
  let upstreamSocketMissing: string | undefined;
  try {
    const parsed = parseUpstream(upstream);
    if (parsed.endpoint.transport === 'unix' && !probe.socketExists(parsed.endpoint.path)) upstreamSocketMissing = parsed.endpoint.path;
  } catch (err) {
    problems.push(`--upstream (SLIPWAY_DEV_UPSTREAM): ${(err as Error).message}`);
  }

  const tlsName = (e['SLIPWAY_DEV_TLS_NAME'] || DEFAULT_TLS_NAME).toLowerCase();
  if (!DNS_NAME.test(tlsName)) {
    problems.push(`--tls-name (SLIPWAY_DEV_TLS_NAME) must be a DNS name such as 'gateway' or 'build.example.com'; got '${tlsName}'`);
  }

  const platformOrNone = hostPlatform(probe.arch);
  if (platformOrNone === undefined) {
    problems.push(`this machine's architecture is '${probe.arch}'; the local agent builds for ${Platforms.join(' or ')} only (x64 or arm64)`);
  }

  const config: DevLauncherConfig = {
    listenHost: listen.host,
    listenPort: listen.port,
    dir,
    upstream,
    upstreamChoice,
    upstreamSocketMissing,
    tlsName,
    platform: platformOrNone ?? 'linux/amd64',
    logLevel: readEnum(e, 'SLIPWAY_LOG_LEVEL', LogLevels, 'info', problems),
  };
  if (problems.length > 0) {
    throw new DevLauncherError('CONFIG_INVALID', `invalid dev launcher configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return config;
}

/** The URL clients on this machine use: a wildcard listen address is reached through loopback. */
export function localGatewayUrl(host: string, port: number): string {
  const reachable = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `https://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}
