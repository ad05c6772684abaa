import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cloudConfigDocument, type CloudConfigFile } from './cloudConfig.js';

// The cloud-init user data of a builder VM: the systemd units and boot scripts beside this file,
// plus the values for one launch template (one architecture). The units and scripts are kept as
// plain files so they can be read, linted and verified as what they are; this only gathers them.

export type BuilderArch = 'amd64' | 'arm64';

/** The BuildKit release every builder runs; the same as docker-compose.yml's buildkitd image. */
export const BUILDKIT_VERSION = 'v0.13.2';
export const BUILDKIT_RELEASES_URL = 'https://github.com/moby/buildkit/releases/download';

export interface BuilderUserDataOptions {
  arch: BuilderArch;
  /** https:// URL of the gateway (the load balancer's name on the gateway's certificate). */
  gatewayUrl: string;
  /** Links the agent keeps through that URL, each to a different replica: the number of replicas. */
  gatewayLinks: number;
  /** Builds at once on one builder. */
  maxBuilds: number;
  /** How long a stopping builder lets active builds finish (agent --drain-grace-ms). */
  drainGraceMs: number;
  buildkit: {
    /** Defaults to BUILDKIT_VERSION. */
    version?: string;
    /** SHA-256 of buildkit-VERSION.linux-ARCH.tar.gz from the release page. */
    sha256: string;
    /** Defaults to BUILDKIT_RELEASES_URL (a mirror in the account works the same). */
    urlBase?: string;
  };
  /** The agent-bundle tarball (deploy/docker/Dockerfile.agent, target agent-bundle) for this architecture. */
  agentBundle: { url: string; sha256: string };
  /** PEM of a private CA that issued the gateway's certificate; omit for a public certificate. */
  gatewayCaPem?: string;
  /** The join token written to the builder: for a fleet, a fleet join token (sub `fleet:<fleet>`), which admits any instance of the fleet that proves its identity. */
  joinToken?: string;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

/** What the user data writes, by path on the VM. */
export type BuilderFile = CloudConfigFile;

const HERE = fileURLToPath(new URL('.', import.meta.url));

export const BUILDER_UNITS = ['slipway-cache-disk.service', 'slipway-imds-guard.service', 'buildkitd.service', 'slipway-agent.service'] as const;
export const BUILDER_SCRIPTS = ['cache-disk', 'buildkit-config', 'imds-guard', 'install-builder'] as const;
export const AGENT_ENV_PATH = '/etc/slipway/agent.env';
export const AGENT_TOKEN_PATH = '/etc/slipway/agent.token';
export const INSTALL_ENV_PATH = '/etc/slipway/install.env';
export const GATEWAY_CA_PATH = '/etc/slipway/gateway-ca.pem';

/** Debian 13 packages the boot needs (nodejs is 20.x there, which the agent requires). */
export const BUILDER_PACKAGES = ['nodejs', 'curl', 'ca-certificates', 'nftables', 'e2fsprogs', 'util-linux'] as const;

function readHere(...parts: string[]): string {
  return fs.readFileSync([HERE, ...parts].join('/'), 'utf8');
}

// Values land in env files that both systemd and bash read: one line each, no quoting needed.
function plainValue(name: string, value: string, problems: string[]): string {
  if (!/^[A-Za-z0-9_.:/@%+=,-]+$/.test(value)) problems.push(`${name} must be a single word of URL-safe characters; got '${value.slice(0, 80)}'`);
  return value;
}

function httpsUrl(name: string, value: string, problems: string[]): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    problems.push(`${name} must be an https:// URL; got '${value.slice(0, 80)}'`);
    return value;
  }
  if (url.protocol !== 'https:') problems.push(`${name} must be an https:// URL; got '${value.slice(0, 80)}'`);
  return plainValue(name, value.replace(/\/+$/, ''), problems);
}

function sha256(name: string, value: string, problems: string[]): string {
  if (!/^[0-9a-f]{64}$/.test(value)) problems.push(`${name} must be 64 lowercase hex digits (a SHA-256); got '${value.slice(0, 80)}'`);
  return value;
}

function intIn(name: string, value: number, min: number, max: number, problems: string[]): string {
  if (!Number.isInteger(value) || value < min || value > max) problems.push(`${name} must be an integer from ${min} to ${max}; got ${value}`);
  return String(value);
}

function envFile(header: string, values: Record<string, string>): string {
  return `# ${header}\n${Object.entries(values)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`;
}

/** Everything the user data writes onto the VM. Throws naming every problem with the options. */
export function builderFiles(options: BuilderUserDataOptions): BuilderFile[] {
  const problems: string[] = [];
  if (options.arch !== 'amd64' && options.arch !== 'arm64') problems.push(`arch must be amd64 or arm64; got '${String(options.arch)}'`);
  const version = options.buildkit.version ?? BUILDKIT_VERSION;
  if (!/^v\d+\.\d+\.\d+$/.test(version)) problems.push(`buildkit.version must be a release tag like ${BUILDKIT_VERSION}; got '${version}'`);
  const agentEnv: Record<string, string> = {
    SLIPWAY_GATEWAY: httpsUrl('gatewayUrl', options.gatewayUrl, problems),
    SLIPWAY_GATEWAY_LINKS: intIn('gatewayLinks', options.gatewayLinks, 1, 8, problems),
    SLIPWAY_MAX_BUILDS: intIn('maxBuilds', options.maxBuilds, 1, 1024, problems),
    SLIPWAY_DRAIN_GRACE_MS: intIn('drainGraceMs', options.drainGraceMs, 0, 600_000, problems),
    SLIPWAY_LOG_LEVEL: plainValue('logLevel', options.logLevel ?? 'info', problems),
    ...(options.gatewayCaPem !== undefined ? { SLIPWAY_CA_CERT: GATEWAY_CA_PATH } : {}),
  };
  const installEnv: Record<string, string> = {
    SLIPWAY_ARCH: options.arch,
    BUILDKIT_VERSION: version,
    BUILDKIT_SHA256: sha256('buildkit.sha256', options.buildkit.sha256, problems),
    BUILDKIT_URL_BASE: httpsUrl('buildkit.urlBase', options.buildkit.urlBase ?? BUILDKIT_RELEASES_URL, problems),
    SLIPWAY_AGENT_BUNDLE_URL: httpsUrl('agentBundle.url', options.agentBundle.url, problems),
    SLIPWAY_AGENT_BUNDLE_SHA256: sha256('agentBundle.sha256', options.agentBundle.sha256, problems),
  };
  if (options.gatewayCaPem !== undefined && !options.gatewayCaPem.includes('-----BEGIN CERTIFICATE-----')) {
    problems.push('gatewayCaPem must be PEM (-----BEGIN CERTIFICATE-----)');
  }
  if (options.joinToken !== undefined && !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(options.joinToken)) {
    problems.push('joinToken must be a JWT (three base64url parts)');
  }
  if (problems.length > 0) throw new Error(`invalid builder user data options:\n  - ${problems.join('\n  - ')}`);

  return [
    ...BUILDER_UNITS.map((unit): BuilderFile => ({ path: `/etc/systemd/system/${unit}`, permissions: '0644', content: readHere('systemd', unit) })),
    ...BUILDER_SCRIPTS.map((script): BuilderFile => ({ path: `/usr/local/lib/slipway/${script}`, permissions: '0755', content: readHere('libexec', script) })),
    { path: AGENT_ENV_PATH, permissions: '0600', content: envFile('slipway-agent.service reads this (EnvironmentFile); written by cloud-init.', agentEnv) },
    { path: INSTALL_ENV_PATH, permissions: '0600', content: envFile('install-builder reads this on the first boot; written by cloud-init.', installEnv) },
    ...(options.gatewayCaPem !== undefined ? [{ path: GATEWAY_CA_PATH, permissions: '0644' as const, content: options.gatewayCaPem.trim() + '\n' }] : []),
    ...(options.joinToken !== undefined ? [{ path: AGENT_TOKEN_PATH, permissions: '0600' as const, content: `${options.joinToken}\n` }] : []),
  ];
}

/** The #cloud-config document for one launch template. */
export function renderBuilderUserData(options: BuilderUserDataOptions): string {
  return cloudConfigDocument({
    comment: 'Slipway builder VM (generated by deploy/builder/builderUserData.ts). No inbound port: the agent dials out.',
    packages: BUILDER_PACKAGES,
    files: builderFiles(options),
    runcmd: [
      ['/usr/local/lib/slipway/install-builder'],
      // Nothing listens on a builder: the image's SSH server goes too (the security group has no inbound rule either).
      ['sh', '-c', 'systemctl disable --now ssh.service ssh.socket 2>/dev/null || true'],
      ['systemctl', 'daemon-reload'],
      // --no-block: the guard starts after cloud-final, which is running this very command.
      ['systemctl', 'enable', '--now', '--no-block', ...BUILDER_UNITS],
    ],
  });
}
