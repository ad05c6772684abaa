import os from 'node:os';
import { mergeFlags, readInt, readBool, readEnum, readHttpsUrl, parseHostPort, LogLevels, type Env, type LogLevel } from '@slipway/proto';
import { GatewayError } from './gatewayError.js';
import { DEFAULT_ABUSE_LIMITS, type AbuseLimits, type RateFigures } from './abuseGuard.js';
import { readEc2FleetConfig, type Ec2FleetConfig } from './fleet/ec2FleetConfig.js';

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
  /** Without Redis: where projects, tokens and trust policies are kept (JSON, mode 0600); undefined: in memory only. */
  identityFile: string | undefined;
  /** Longest life of a project token issued through the admin API. */
  maxTokenTtlSec: number;
  /** How often revocations made through other replicas are picked up. */
  revocationRefreshMs: number;
  /** Extra CA bundle for CI OIDC issuers' HTTPS (discovery and JWKS). */
  oidcCaPath: string | undefined;
  /** Life of a project token exchanged for a CI OIDC token, unless the trust policy says otherwise. */
  oidcTokenTtlSec: number;
  /** File the audit log of authentication decisions is appended to; undefined: standard error. */
  auditLogPath: string | undefined;
  limits: AbuseLimits;
  /** JSON file {region: PEM or [PEM]} of AWS's RSA certificates for instance identity documents. */
  instanceIdentityCertsPath: string | undefined;
  /** AWS accounts builder instances may belong to. */
  awsAccounts: string[];
  /** Refuse agents without a verified instance identity (default: with the ec2 fleet). */
  requireInstanceIdentity: boolean;
  /** Where other replicas reach this one; undefined: https://<listen address>. */
  internalUrl: string | undefined;
  /** CA bundle for other replicas' certificates; undefined: the system's. */
  internalCaPath: string | undefined;
  fleet: FleetConfig;
}

export interface FleetConfig {
  /** `local`: agents run by hand, nothing is launched. `ec2`: the gateway manages EC2 builders. */
  kind: 'local' | 'ec2';
  /** The EC2 settings; set exactly when kind is ec2. */
  ec2: Ec2FleetConfig | undefined;
  /** A project's builder idle this long is stopped (its cache stays on its disk). */
  idleStopMs: number;
  /** A project's builder stopped this long is terminated (its cache is dropped). */
  cacheRetentionMs: number;
  /** Stopped, unbound instances kept ready per platform. */
  warmPoolSize: number;
  reconcileIntervalMs: number;
  maxInstancesPerPlatform: number;
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
  '--identity-file': 'SLIPWAY_IDENTITY_FILE',
  '--max-token-ttl-sec': 'SLIPWAY_MAX_TOKEN_TTL_SEC',
  '--revocation-refresh-ms': 'SLIPWAY_REVOCATION_REFRESH_MS',
  '--instance-identity-certs': 'SLIPWAY_INSTANCE_IDENTITY_CERTS',
  '--aws-accounts': 'SLIPWAY_AWS_ACCOUNTS',
  '--require-instance-identity': 'SLIPWAY_REQUIRE_INSTANCE_IDENTITY',
  '--oidc-ca': 'SLIPWAY_OIDC_CA',
  '--oidc-token-ttl-sec': 'SLIPWAY_OIDC_TOKEN_TTL_SEC',
  '--audit-log': 'SLIPWAY_AUDIT_LOG',
  '--rate-auth-per-address': 'SLIPWAY_RATE_AUTH_PER_ADDRESS',
  '--rate-opens-per-token': 'SLIPWAY_RATE_OPENS_PER_TOKEN',
  '--rate-opens-per-address': 'SLIPWAY_RATE_OPENS_PER_ADDRESS',
  '--max-streams-per-token': 'SLIPWAY_MAX_STREAMS_PER_TOKEN',
  '--fleet': 'SLIPWAY_FLEET',
  '--fleet-dry-run': 'SLIPWAY_FLEET_DRY_RUN',
  '--ec2-fleet-name': 'SLIPWAY_EC2_FLEET_NAME',
  '--ec2-region': 'SLIPWAY_EC2_REGION',
  '--ec2-endpoint': 'SLIPWAY_EC2_ENDPOINT',
  '--ec2-launch-template-amd64': 'SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64',
  '--ec2-launch-template-arm64': 'SLIPWAY_EC2_LAUNCH_TEMPLATE_ARM64',
  '--ec2-instance-type-amd64': 'SLIPWAY_EC2_INSTANCE_TYPE_AMD64',
  '--ec2-instance-type-arm64': 'SLIPWAY_EC2_INSTANCE_TYPE_ARM64',
  '--ec2-throttle-max-attempts': 'SLIPWAY_EC2_THROTTLE_MAX_ATTEMPTS',
  '--ec2-throttle-base-delay-ms': 'SLIPWAY_EC2_THROTTLE_BASE_DELAY_MS',
  '--ec2-throttle-max-delay-ms': 'SLIPWAY_EC2_THROTTLE_MAX_DELAY_MS',
  '--ec2-describe-page-size': 'SLIPWAY_EC2_DESCRIBE_PAGE_SIZE',
  '--idle-stop-ms': 'SLIPWAY_IDLE_STOP_MS',
  '--cache-retention-ms': 'SLIPWAY_CACHE_RETENTION_MS',
  '--warm-pool-size': 'SLIPWAY_WARM_POOL_SIZE',
  '--reconcile-interval-ms': 'SLIPWAY_RECONCILE_INTERVAL_MS',
  '--max-instances-per-platform': 'SLIPWAY_MAX_INSTANCES_PER_PLATFORM',
};

export const GATEWAY_FLAGS: Readonly<Record<string, string>> = FLAGS;

// A rate as BURST/PER_SECOND, e.g. 200/50: up to 200 at once, refilled at 50 per second.
function readRate(e: Record<string, string | undefined>, name: string, fallback: RateFigures, problems: string[]): RateFigures {
  const raw = e[name];
  if (raw === undefined || raw === '') return fallback;
  const m = /^(\d+)\/(\d+(?:\.\d+)?)$/.exec(raw.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) <= 0) {
    problems.push(`${name} must be BURST/PER_SECOND with positive numbers, e.g. ${fallback.capacity}/${fallback.refillPerSec}; got '${raw.slice(0, 40)}'`);
    return fallback;
  }
  return { capacity: Number(m[1]), refillPerSec: Number(m[2]) };
}

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

// The ec2 settings arrive as one environment variable each. readEc2FleetConfig reads the object
// they make and names problems by its keys; the operator set variables, so its messages are
// renamed to them (longest prefix first: the instance type lives inside a template).
const EC2_SETTING_NAMES: ReadonlyArray<readonly [string, string]> = [
  ["ec2.launchTemplates must name a launch template for at least one of linux/amd64, linux/arm64",
    'SLIPWAY_FLEET=ec2 needs SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64 and/or SLIPWAY_EC2_LAUNCH_TEMPLATE_ARM64 (ID_OR_NAME[:VERSION])'],
  ["ec2.launchTemplates['linux/amd64'].instanceType", 'SLIPWAY_EC2_INSTANCE_TYPE_AMD64'],
  ["ec2.launchTemplates['linux/arm64'].instanceType", 'SLIPWAY_EC2_INSTANCE_TYPE_ARM64'],
  ["ec2.launchTemplates['linux/amd64'].", 'SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64: '],
  ["ec2.launchTemplates['linux/arm64'].", 'SLIPWAY_EC2_LAUNCH_TEMPLATE_ARM64: '],
  ["ec2.launchTemplates['linux/amd64']", 'SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64'],
  ["ec2.launchTemplates['linux/arm64']", 'SLIPWAY_EC2_LAUNCH_TEMPLATE_ARM64'],
  ['ec2.fleet', 'SLIPWAY_EC2_FLEET_NAME'],
  ['ec2.region', 'SLIPWAY_EC2_REGION (or AWS_REGION)'],
  ['ec2.endpoint', 'SLIPWAY_EC2_ENDPOINT'],
  ['ec2.dryRun', 'SLIPWAY_FLEET_DRY_RUN'],
  ['ec2.throttleMaxAttempts', 'SLIPWAY_EC2_THROTTLE_MAX_ATTEMPTS'],
  ['ec2.throttleBaseDelayMs', 'SLIPWAY_EC2_THROTTLE_BASE_DELAY_MS'],
  ['ec2.throttleMaxDelayMs', 'SLIPWAY_EC2_THROTTLE_MAX_DELAY_MS'],
  ['ec2.describePageSize', 'SLIPWAY_EC2_DESCRIBE_PAGE_SIZE'],
];

// `lt-0123456789abcdef0` or a template name, optionally `:VERSION` (a number, $Default, $Latest);
// neither ids nor names can hold a colon.
function launchTemplateInput(raw: string | undefined, instanceType: string | undefined): Record<string, unknown> | undefined {
  if (raw === undefined || raw === '') return undefined;
  const colon = raw.lastIndexOf(':');
  const ref = colon >= 0 ? raw.slice(0, colon) : raw;
  const version = colon >= 0 ? raw.slice(colon + 1) : undefined;
  return {
    ...(/^lt-[0-9a-f]{8,17}$/.test(ref) ? { id: ref } : { name: ref }),
    ...(version !== undefined ? { version } : {}),
    ...(instanceType ? { instanceType } : {}),
  };
}

function readFleet(e: Env, redis: GatewayConfig['redis'], problems: string[]): FleetConfig {
  const kind = readEnum(e, 'SLIPWAY_FLEET', ['local', 'ec2'] as const, 'local', problems);
  const warmPoolSize = readInt(e, 'SLIPWAY_WARM_POOL_SIZE', 0, 0, 100, problems);
  const maxInstancesPerPlatform = readInt(e, 'SLIPWAY_MAX_INSTANCES_PER_PLATFORM', 20, 1, 10_000, problems);
  if (warmPoolSize > maxInstancesPerPlatform) {
    problems.push(`SLIPWAY_WARM_POOL_SIZE (${warmPoolSize}) must not exceed SLIPWAY_MAX_INSTANCES_PER_PLATFORM (${maxInstancesPerPlatform})`);
  }
  const fleet: FleetConfig = {
    kind,
    ec2: undefined,
    idleStopMs: readInt(e, 'SLIPWAY_IDLE_STOP_MS', 600_000, 1_000, 86_400_000, problems),
    cacheRetentionMs: readInt(e, 'SLIPWAY_CACHE_RETENTION_MS', 7 * 86_400_000, 1_000, 365 * 86_400_000, problems),
    warmPoolSize,
    reconcileIntervalMs: readInt(e, 'SLIPWAY_RECONCILE_INTERVAL_MS', 10_000, 100, 600_000, problems),
    maxInstancesPerPlatform,
  };
  if (kind !== 'ec2') return fleet;
  if (redis === undefined) {
    problems.push(
      'SLIPWAY_FLEET=ec2 needs SLIPWAY_REDIS_URL: a fleet needs the shared routing table (one replica leads the fleet, and every replica must see the builders it brings up)',
    );
  }
  const launchTemplates: Record<string, unknown> = {};
  const amd64 = launchTemplateInput(e['SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64'], e['SLIPWAY_EC2_INSTANCE_TYPE_AMD64']);
  const arm64 = launchTemplateInput(e['SLIPWAY_EC2_LAUNCH_TEMPLATE_ARM64'], e['SLIPWAY_EC2_INSTANCE_TYPE_ARM64']);
  if (amd64) launchTemplates['linux/amd64'] = amd64;
  if (arm64) launchTemplates['linux/arm64'] = arm64;
  for (const [type, template] of [['SLIPWAY_EC2_INSTANCE_TYPE_AMD64', amd64], ['SLIPWAY_EC2_INSTANCE_TYPE_ARM64', arm64]] as const) {
    if (e[type] && !template) problems.push(`${type} needs the launch template it overrides (${type.replace('INSTANCE_TYPE', 'LAUNCH_TEMPLATE')})`);
  }
  const ec2Problems: string[] = [];
  fleet.ec2 = readEc2FleetConfig(
    {
      fleet: e['SLIPWAY_EC2_FLEET_NAME'],
      region: e['SLIPWAY_EC2_REGION'] || e['AWS_REGION'] || e['AWS_DEFAULT_REGION'],
      endpoint: e['SLIPWAY_EC2_ENDPOINT'],
      dryRun: e['SLIPWAY_FLEET_DRY_RUN'],
      launchTemplates,
      throttleMaxAttempts: e['SLIPWAY_EC2_THROTTLE_MAX_ATTEMPTS'],
      throttleBaseDelayMs: e['SLIPWAY_EC2_THROTTLE_BASE_DELAY_MS'],
      throttleMaxDelayMs: e['SLIPWAY_EC2_THROTTLE_MAX_DELAY_MS'],
      describePageSize: e['SLIPWAY_EC2_DESCRIBE_PAGE_SIZE'],
    },
    ec2Problems,
    'ec2',
  );
  for (const problem of ec2Problems) {
    const renamed = EC2_SETTING_NAMES.find(([from]) => problem.startsWith(from));
    problems.push(renamed ? renamed[1] + problem.slice(renamed[0].length) : problem);
  }
  return fleet;
}

export function loadConfig(env: Env, argv: readonly string[] = []): GatewayConfig {
  const problems: string[] = [];
  const e = mergeFlags(env, argv, FLAGS, problems, { boolean: new Set(['--require-instance-identity', '--redis-cluster', '--fleet-dry-run']) });
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
  if (redis && e['SLIPWAY_IDENTITY_FILE']) {
    problems.push('SLIPWAY_IDENTITY_FILE is for a gateway without Redis; with SLIPWAY_REDIS_URL projects and tokens live in Redis');
  }
  const fleetKind = e['SLIPWAY_FLEET'] === 'ec2' ? 'ec2' : 'local';
  const requireInstanceIdentity = readBool(e, 'SLIPWAY_REQUIRE_INSTANCE_IDENTITY', fleetKind === 'ec2', problems);
  if (requireInstanceIdentity && !e['SLIPWAY_INSTANCE_IDENTITY_CERTS']) {
    problems.push(
      'SLIPWAY_INSTANCE_IDENTITY_CERTS is required when agents must prove their EC2 instance (SLIPWAY_FLEET=ec2 or SLIPWAY_REQUIRE_INSTANCE_IDENTITY); ' +
        'set SLIPWAY_REQUIRE_INSTANCE_IDENTITY=false to admit agents on their join token alone',
    );
  }
  const awsAccounts = (e['SLIPWAY_AWS_ACCOUNTS'] ?? '').split(',').map((a) => a.trim()).filter(Boolean);
  const badAccounts = awsAccounts.filter((a) => !/^\d{12}$/.test(a));
  if (badAccounts.length > 0) problems.push(`SLIPWAY_AWS_ACCOUNTS must be 12-digit account ids; got ${badAccounts.map((a) => `'${a.slice(0, 20)}'`).join(', ')}`);
  if (e['SLIPWAY_INSTANCE_IDENTITY_CERTS'] && awsAccounts.length === 0) {
    problems.push('SLIPWAY_AWS_ACCOUNTS is required with SLIPWAY_INSTANCE_IDENTITY_CERTS: the accounts your builder instances run in');
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
    identityFile: e['SLIPWAY_IDENTITY_FILE'] || undefined,
    oidcCaPath: e['SLIPWAY_OIDC_CA'] || undefined,
    oidcTokenTtlSec: readInt(e, 'SLIPWAY_OIDC_TOKEN_TTL_SEC', 900, 60, 43_200, problems),
    auditLogPath: e['SLIPWAY_AUDIT_LOG'] || undefined,
    limits: {
      authPerAddress: readRate(e, 'SLIPWAY_RATE_AUTH_PER_ADDRESS', DEFAULT_ABUSE_LIMITS.authPerAddress, problems),
      opensPerToken: readRate(e, 'SLIPWAY_RATE_OPENS_PER_TOKEN', DEFAULT_ABUSE_LIMITS.opensPerToken, problems),
      opensPerAddress: readRate(e, 'SLIPWAY_RATE_OPENS_PER_ADDRESS', DEFAULT_ABUSE_LIMITS.opensPerAddress, problems),
      maxStreamsPerToken: readInt(e, 'SLIPWAY_MAX_STREAMS_PER_TOKEN', DEFAULT_ABUSE_LIMITS.maxStreamsPerToken, 1, 1_000_000, problems),
      maxKeys: DEFAULT_ABUSE_LIMITS.maxKeys,
    },
    instanceIdentityCertsPath: e['SLIPWAY_INSTANCE_IDENTITY_CERTS'] || undefined,
    awsAccounts,
    requireInstanceIdentity,
    maxTokenTtlSec: readInt(e, 'SLIPWAY_MAX_TOKEN_TTL_SEC', 90 * 86_400, 60, 366 * 86_400, problems),
    revocationRefreshMs: readInt(e, 'SLIPWAY_REVOCATION_REFRESH_MS', 2_000, 100, 600_000, problems),
    fleet: readFleet(e, redis, problems),
  };
  if (problems.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `invalid gateway configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return config;
}
