import os from 'node:os';
import fs from 'node:fs';
import { mergeFlags, readHttpsUrl, readInt, readEnum, LogLevels, isPlatform, Platforms, type Env, type LogLevel, type Platform } from '@slipway/proto';
import { AgentError, toAgentError } from './agentError.js';
import { IMDS_DEFAULT_URL, type InstanceIdentity } from './instanceIdentity.js';
import { parseUpstream, type Upstream } from './upstream.js';

export interface AgentConfig {
  /** Where to dial: gateway replicas, or load balancers in front of them. */
  gatewayUrls: URL[];
  /** Links kept through each URL, each to a different replica. */
  gatewayLinks: number;
  token: string;
  /** With identitySource `imds`, the instance id once applyInstanceIdentity has run. */
  agentId: string;
  /** Whether agentId was configured rather than defaulted (a configured one must match the instance). */
  agentIdConfigured: boolean;
  platform: Platform;
  upstream: Upstream;
  /** Upstream connections kept dialed ahead of the streams that will use them (0: none). */
  upstreamSpares: number;
  /** A spare not used within this long is closed (servers drop connections that stay silent). */
  upstreamSpareMaxAgeMs: number;
  /** Idle lanes (data connections for tunnel streams) kept open to each linked replica; 0: streams ride the link. */
  lanes: number;
  maxStreams: number;
  /** Builds at once: the capacity placement gives this builder. */
  maxBuilds: number;
  /** The fleet member (EC2 instance id) this agent runs on, if the fleet launched it. */
  instanceId: string | undefined;
  /** `imds`: prove the EC2 instance to the gateway with its signed identity document. */
  identitySource: IdentitySource;
  /** Where IMDS answers (http://169.254.169.254 on EC2). */
  imdsUrl: URL;
  /** The identity presented on every connect request; set by applyInstanceIdentity. */
  instanceIdentity: InstanceIdentity | undefined;
  caCertPath: string | undefined;
  labels: Record<string, string>;
  connectTimeoutMs: number;
  heartbeatTimeoutMs: number;
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  drainGraceMs: number;
  /** While draining, the agent exits once no stream has been open for this long (its builds are done). */
  drainQuietMs: number;
  logLevel: LogLevel;
}

const FLAGS: Record<string, string> = {
  '--gateway': 'SLIPWAY_GATEWAY',
  '--gateway-links': 'SLIPWAY_GATEWAY_LINKS',
  '--token': 'SLIPWAY_AGENT_TOKEN',
  '--token-file': 'SLIPWAY_AGENT_TOKEN_FILE',
  '--agent-id': 'SLIPWAY_AGENT_ID',
  '--platform': 'SLIPWAY_PLATFORM',
  '--upstream': 'SLIPWAY_UPSTREAM',
  '--upstream-spares': 'SLIPWAY_UPSTREAM_SPARES',
  '--lanes': 'SLIPWAY_LANES',
  '--upstream-spare-max-age-ms': 'SLIPWAY_UPSTREAM_SPARE_MAX_AGE_MS',
  '--max-streams': 'SLIPWAY_MAX_STREAMS',
  '--max-builds': 'SLIPWAY_MAX_BUILDS',
  '--instance-id': 'SLIPWAY_INSTANCE_ID',
  '--identity': 'SLIPWAY_AGENT_IDENTITY',
  '--imds-url': 'SLIPWAY_IMDS_URL',
  '--ca-cert': 'SLIPWAY_CA_CERT',
  '--label': 'SLIPWAY_AGENT_LABELS',
  '--connect-timeout-ms': 'SLIPWAY_CONNECT_TIMEOUT_MS',
  '--heartbeat-timeout-ms': 'SLIPWAY_HEARTBEAT_TIMEOUT_MS',
  '--reconnect-base-ms': 'SLIPWAY_RECONNECT_BASE_MS',
  '--reconnect-max-ms': 'SLIPWAY_RECONNECT_MAX_MS',
  '--drain-grace-ms': 'SLIPWAY_DRAIN_GRACE_MS',
  '--drain-quiet-ms': 'SLIPWAY_DRAIN_QUIET_MS',
  '--log-level': 'SLIPWAY_LOG_LEVEL',
};

export const AGENT_FLAGS: Readonly<Record<string, string>> = FLAGS;

export const MAX_GATEWAY_LINKS = 8;

export const IdentitySources = ['none', 'imds'] as const;
export type IdentitySource = (typeof IdentitySources)[number];

// Flags whose meaning the name alone does not carry; --help prints these under them.
const FLAG_NOTES: Readonly<Record<string, string>> = {
  '--gateway': 'https:// URL of a gateway replica or of a load balancer in front of them; repeat the flag (or separate with commas) for several',
  '--gateway-links':
    `links kept through EACH --gateway URL, each to a different replica (default 1, at most ${MAX_GATEWAY_LINKS}); ` +
    'raise it when a URL is a load balancer, so losing one replica leaves the agent reachable; a link that lands on a replica ' +
    'already linked is closed and retried with backoff, so the agent settles on as many replicas as there are, up to N',
  '--label': 'KEY=VALUE; repeat the flag (or separate with commas) for several',
  '--identity':
    'none (default) or imds: on EC2, present the instance identity document signed by AWS (read through IMDSv2) to the gateway; ' +
    'the agent id and instance id are then the instance id',
  '--upstream-spares': 'upstream connections dialed ahead of use (default 1; 0 turns it off): a stream then starts on a connection that is already open (for dockerd, already upgraded)',
  '--upstream-spare-max-age-ms': 'a spare unused this long is closed (default 10000)',
  '--lanes':
    'idle lanes kept open to each linked gateway replica (default 2, at most 16; 0 turns them off): a lane is a TLS connection that carries ' +
    'one tunnel stream at a time as thin frames, cheaper per byte than a stream on the link, which remains the fallback',
  '--imds-url': `instance metadata service URL for --identity imds (default ${IMDS_DEFAULT_URL})`,
};

export function agentUsage(): string {
  const lines = Object.entries(FLAGS).map(([flag, name]) => {
    const note = FLAG_NOTES[flag];
    return `  ${flag.padEnd(24)} ${name}${note ? `\n  ${''.padEnd(24)} ${note}` : ''}`;
  });
  return (
    'Usage: slipway-agent [flags]\nDials the gateway and connects its tunnel streams to BuildKit.\n' +
    `Every flag can also be given as the environment variable shown.\n${lines.join('\n')}\n`
  );
}

export function hostPlatform(arch: string = process.arch): Platform | undefined {
  if (arch === 'x64') return 'linux/amd64';
  if (arch === 'arm64') return 'linux/arm64';
  return undefined;
}

// Each URL on its own, so one bad entry in a list is named and the others are still checked.
function readGatewayUrls(raw: string | undefined, problems: string[]): URL[] {
  const entries = (raw ?? '').split(',').map((entry) => entry.trim()).filter(Boolean);
  if (entries.length === 0) {
    readHttpsUrl({}, 'SLIPWAY_GATEWAY', '--gateway', problems);
    return [];
  }
  const urls: URL[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    const before = problems.length;
    const url = readHttpsUrl({ SLIPWAY_GATEWAY: entry }, 'SLIPWAY_GATEWAY', '--gateway', problems);
    if (problems.length > before) continue;
    // The dialer uses only the host and port, so two spellings of one origin are one gateway.
    if (seen.has(url.origin)) {
      problems.push(`SLIPWAY_GATEWAY lists ${url.origin} twice; to keep several links through one URL use SLIPWAY_GATEWAY_LINKS`);
      continue;
    }
    seen.add(url.origin);
    urls.push(url);
  }
  return urls;
}

// Instance ids travel in the routing table and in logs: the same safe alphabet as agent ids.
function readInstanceId(raw: string | undefined, problems: string[]): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(raw)) {
    problems.push(`SLIPWAY_INSTANCE_ID must be an instance id such as i-0123456789abcdef0; got '${raw.slice(0, 64)}'`);
    return undefined;
  }
  return raw;
}

// IMDS is plain HTTP on a link-local address; a path would be dropped when the fixed paths are
// appended, so it is refused rather than silently ignored.
function readImdsUrl(raw: string | undefined, problems: string[]): URL {
  const fallback = new URL(IMDS_DEFAULT_URL);
  if (raw === undefined || raw === '') return fallback;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    problems.push(`SLIPWAY_IMDS_URL must be a URL like ${IMDS_DEFAULT_URL}; got '${raw.slice(0, 100)}'`);
    return fallback;
  }
  if (url.protocol !== 'http:' || url.username || url.password || url.pathname !== '/' || url.search || url.hash) {
    problems.push(`SLIPWAY_IMDS_URL must be http://HOST[:PORT] with nothing after it, like ${IMDS_DEFAULT_URL}; got '${raw.slice(0, 100)}'`);
    return fallback;
  }
  return url;
}

const EC2_INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;

export function loadConfig(env: Env, argv: readonly string[] = []): AgentConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, FLAGS, problems, { repeatable: new Set(['--label', '--gateway']) });

  const gatewayUrls = readGatewayUrls(e['SLIPWAY_GATEWAY'], problems);
  const gatewayLinks = readInt(e, 'SLIPWAY_GATEWAY_LINKS', 1, 1, MAX_GATEWAY_LINKS, problems);

  let token = e['SLIPWAY_AGENT_TOKEN'] ?? '';
  const tokenFile = e['SLIPWAY_AGENT_TOKEN_FILE'];
  if (token && tokenFile) problems.push('give SLIPWAY_AGENT_TOKEN or SLIPWAY_AGENT_TOKEN_FILE, not both');
  else if (tokenFile) {
    try {
      token = fs.readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      problems.push(`SLIPWAY_AGENT_TOKEN_FILE '${tokenFile}' cannot be read: ${(err as Error).message}`);
    }
  } else if (!token) problems.push('SLIPWAY_AGENT_TOKEN or SLIPWAY_AGENT_TOKEN_FILE is required (the fleet join token)');

  const platformRaw = e['SLIPWAY_PLATFORM'] ?? hostPlatform();
  let platform: Platform = 'linux/amd64';
  if (platformRaw === undefined) problems.push(`SLIPWAY_PLATFORM is required on ${process.arch}; expected one of ${Platforms.join(', ')}`);
  else if (!isPlatform(platformRaw)) problems.push(`SLIPWAY_PLATFORM must be one of ${Platforms.join(', ')}; got '${platformRaw}'`);
  else platform = platformRaw;

  const connectTimeoutMs = readInt(e, 'SLIPWAY_CONNECT_TIMEOUT_MS', 10_000, 100, 600_000, problems);
  let upstream: Upstream | undefined;
  const upstreamRaw = e['SLIPWAY_UPSTREAM'];
  if (!upstreamRaw) problems.push('SLIPWAY_UPSTREAM is required (e.g. buildkitd:unix:///run/buildkit/buildkitd.sock or dockerd:unix:///var/run/docker.sock)');
  else {
    try {
      upstream = parseUpstream(upstreamRaw, { connectTimeoutMs });
    } catch (err) {
      problems.push(toAgentError(err).message);
    }
  }

  const labels: Record<string, string> = {};
  for (const pair of (e['SLIPWAY_AGENT_LABELS'] ?? '').split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) problems.push(`agent label '${pair}' must be KEY=VALUE`);
    else labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }

  const caCertPath = e['SLIPWAY_CA_CERT'] || undefined;
  if (caCertPath && !fs.existsSync(caCertPath)) problems.push(`SLIPWAY_CA_CERT '${caCertPath}' does not exist`);
  const reconnectBaseMs = readInt(e, 'SLIPWAY_RECONNECT_BASE_MS', 500, 1, 600_000, problems);
  const reconnectMaxMs = readInt(e, 'SLIPWAY_RECONNECT_MAX_MS', 30_000, 1, 3_600_000, problems);
  if (reconnectMaxMs < reconnectBaseMs) problems.push(`SLIPWAY_RECONNECT_MAX_MS (${reconnectMaxMs}) must be at least SLIPWAY_RECONNECT_BASE_MS (${reconnectBaseMs})`);

  const identitySource = readEnum(e, 'SLIPWAY_AGENT_IDENTITY', IdentitySources, 'none', problems);
  const imdsUrl = readImdsUrl(e['SLIPWAY_IMDS_URL'], problems);
  const configuredAgentId = e['SLIPWAY_AGENT_ID'] || undefined;
  const instanceId = readInstanceId(e['SLIPWAY_INSTANCE_ID'], problems);
  // Only the document can say which instance this is, and it is fetched later; what can already be
  // seen not to be an instance id is reported now, with everything else.
  if (identitySource === 'imds') {
    if (configuredAgentId !== undefined && !EC2_INSTANCE_ID.test(configuredAgentId)) {
      problems.push(`with SLIPWAY_AGENT_IDENTITY=imds the agent id is the EC2 instance id; SLIPWAY_AGENT_ID '${configuredAgentId.slice(0, 64)}' is not one (leave it unset)`);
    }
    if (instanceId !== undefined && !EC2_INSTANCE_ID.test(instanceId)) {
      problems.push(`with SLIPWAY_AGENT_IDENTITY=imds, SLIPWAY_INSTANCE_ID '${instanceId}' is not an EC2 instance id (leave it unset)`);
    }
  }

  const config: AgentConfig = {
    gatewayUrls,
    gatewayLinks,
    token,
    agentId: configuredAgentId ?? os.hostname(),
    agentIdConfigured: configuredAgentId !== undefined,
    platform,
    upstream: upstream!,
    upstreamSpares: readInt(e, 'SLIPWAY_UPSTREAM_SPARES', 1, 0, 16, problems),
    lanes: readInt(e, 'SLIPWAY_LANES', 2, 0, 16, problems),
    // grpc-go (buildkitd, dockerd) closes a connection that sends no preface within 120 s.
    upstreamSpareMaxAgeMs: readInt(e, 'SLIPWAY_UPSTREAM_SPARE_MAX_AGE_MS', 10_000, 100, 100_000, problems),
    maxStreams: readInt(e, 'SLIPWAY_MAX_STREAMS', 1024, 1, 100_000, problems),
    maxBuilds: readInt(e, 'SLIPWAY_MAX_BUILDS', 4, 1, 1024, problems),
    instanceId,
    identitySource,
    imdsUrl,
    instanceIdentity: undefined,
    caCertPath,
    labels,
    connectTimeoutMs,
    heartbeatTimeoutMs: readInt(e, 'SLIPWAY_HEARTBEAT_TIMEOUT_MS', 15_000, 100, 3_600_000, problems),
    reconnectBaseMs,
    reconnectMaxMs,
    drainGraceMs: readInt(e, 'SLIPWAY_DRAIN_GRACE_MS', 60_000, 0, 24 * 3_600_000, problems),
    drainQuietMs: readInt(e, 'SLIPWAY_DRAIN_QUIET_MS', 5_000, 0, 3_600_000, problems),
    logLevel: readEnum(e, 'SLIPWAY_LOG_LEVEL', LogLevels, 'info', problems),
  };
  if (problems.length > 0) throw new AgentError('CONFIG_INVALID', `invalid agent configuration:\n  - ${problems.join('\n  - ')}`);
  return config;
}

/**
 * Takes the agent and instance ids from the instance identity document (identitySource `imds`),
 * which fetchInstanceIdentity read once the configuration was loaded. Configured values that
 * contradict the document are configuration problems: the gateway would refuse them anyway.
 */
export function applyInstanceIdentity(config: AgentConfig, identity: InstanceIdentity): AgentConfig {
  const problems: string[] = [];
  const { instanceId } = identity;
  if (config.agentIdConfigured && config.agentId !== instanceId) {
    problems.push(`SLIPWAY_AGENT_ID is '${config.agentId}' but this is instance ${instanceId}; with SLIPWAY_AGENT_IDENTITY=imds the agent id is the instance id (leave it unset)`);
  }
  if (config.instanceId !== undefined && config.instanceId !== instanceId) {
    problems.push(`SLIPWAY_INSTANCE_ID is '${config.instanceId}' but the instance identity document is for ${instanceId} (leave it unset)`);
  }
  const documentPlatform = identity.architecture === 'x86_64' ? 'linux/amd64' : identity.architecture === 'arm64' ? 'linux/arm64' : undefined;
  if (documentPlatform === undefined) {
    problems.push(`instance ${instanceId} is ${identity.architecture}; Slipway builds on x86_64 (linux/amd64) and arm64 (linux/arm64) instances`);
  } else if (documentPlatform !== config.platform) {
    problems.push(`SLIPWAY_PLATFORM is ${config.platform} but instance ${instanceId} is ${identity.architecture} (${documentPlatform})`);
  }
  if (problems.length > 0) throw new AgentError('CONFIG_INVALID', `invalid agent configuration:\n  - ${problems.join('\n  - ')}`);
  return { ...config, agentId: instanceId, instanceId, instanceIdentity: identity };
}
