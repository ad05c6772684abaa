import path from 'node:path';
import { Platforms, isPlatform, readEnum, readInt, LogLevels, type Env, type LogLevel, type Platform } from '@slipway/proto';
import { CliError } from './cliError.js';
import { COMMANDS, GROUPS, OVERVIEW } from './cliCommands.js';
import { CLI_VERSION } from './cliVersion.js';
import { commandHelp, parseCommandLine, settingOf, type CommandLine } from './commandLine.js';
import { credentialsPath, readCredentials, type StoredCredentials } from './credentials.js';
import { detectCi, type CiName } from './ciOidcToken.js';
import { CI_NAMES } from './oidcTokenExchange.js';
import { caBundle, readCaSource, type CaSource } from './caBundle.js';
import { proxyFor } from './proxySettings.js';
import { dockerLocations, platformsNativeFirst, type DockerLocations } from './dockerLocations.js';

export const Transports = ['auto', 'h2', 'websocket'] as const;
export type Transport = (typeof Transports)[number];

export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Default audience of the CI OIDC token the CLI asks for; trust policies name it as theirs. */
export const DEFAULT_OIDC_AUDIENCE = 'slipway';

/** How to reach the gateway. */
export interface GatewayConnectionConfig {
  gatewayUrl: URL;
  /** Node's bundled roots plus caSources; undefined when nothing was added. */
  ca: Buffer | undefined;
  /** CAs added to Node's roots (SLIPWAY_CA_CERT or the stored one, NODE_EXTRA_CA_CERTS), for doctor. */
  caSources?: CaSource[];
  connectTimeoutMs: number;
  // The whole environment, for proxy selection (HTTPS_PROXY, NO_PROXY, ...).
  env: Env;
  /** The user's Slipway directory ($XDG_CONFIG_HOME/slipway); undefined without a home. */
  slipwayDir?: string | undefined;
}

/** Where the project token comes from. */
export type ProjectCredential =
  | { kind: 'token'; token: string; source: 'flag or environment' | 'stored credentials' }
  /** No token was configured and the CLI runs in a CI job: its OIDC identity is exchanged for one. */
  | { kind: 'oidc'; ci: CiName; audience: string; project: string };

/** `proxy` and `dial-stdio`. */
export interface CliConfig extends GatewayConnectionConfig {
  credential: ProjectCredential;
  project: string | undefined;
  transport: Transport;
  platform: Platform;
  listen: ListenAddress[];
  /** How long to wait for a builder before giving up. */
  acquireTimeoutMs: number;
  /** `proxy` finishes its build this long after the last connection closed. */
  buildIdleMs: number;
  /** Keepalives on idle gateway connections this often (0: none). */
  keepaliveMs: number;
  logLevel: LogLevel;
}

/** The proxy daemon (`daemon start|run|worker`) and configure-docker. */
export interface DaemonConfig extends Omit<CliConfig, 'platform' | 'listen' | 'slipwayDir'> {
  slipwayDir: string;
  /** Every platform, the machine's own first. */
  platforms: Platform[];
  /** The command's flags, for the processes it starts. */
  passThrough: string[];
  /** undefined when no home for Docker's configuration can be found. */
  docker: DockerLocations | undefined;
}

/** `doctor`. */
export interface DoctorConfig extends GatewayConnectionConfig {
  /** Configuration problems, reported by doctor's first check rather than thrown. */
  problems: string[];
  /** False when no usable gateway URL was found: nothing on the network can be checked. */
  gatewayKnown: boolean;
  credential: ProjectCredential | undefined;
  project: string | undefined;
  transport: Transport;
  keepaliveMs: number;
  platforms: Platform[];
  acquireTimeoutMs: number;
  json: boolean;
  /** What configure-docker set up, to check; undefined without a home for it. */
  docker: DockerLocations | undefined;
}

export interface LoginConfig extends GatewayConnectionConfig {
  admin: boolean;
  /** prompt: neither flag was given; a terminal is asked without echo, anything else is refused. */
  token: { from: 'flag'; token: string } | { from: 'stdin' } | { from: 'prompt' };
  credentialsFile: string;
  /** What is stored beside the token; undefined caCert: none. */
  caCertPath: string | undefined;
  /** The stored credentials this login adds to (undefined: none yet). */
  stored: StoredCredentials | undefined;
}

export interface AdminConfig extends GatewayConnectionConfig {
  adminToken: string;
  json: boolean;
}

export interface TrustPolicyInput {
  id?: string;
  issuer: string | undefined;
  audience: string | undefined;
  conditions: Record<string, string>;
  untrustedWhen?: Record<string, string>;
  allowAnySubject?: boolean;
  scopes?: string[];
  tokenTtlSec?: number;
}

export type AdminRequest =
  | { command: 'projects create'; name: string; isolateUntrusted: boolean }
  | { command: 'projects list' }
  | { command: 'projects delete'; name: string }
  | { command: 'tokens create'; project: string; scopes: string[] | undefined; ttlSec: number | undefined; description: string | undefined }
  | { command: 'tokens list'; project: string }
  | { command: 'tokens revoke'; id: string }
  | { command: 'trust add'; project: string; policy: TrustPolicyInput }
  | { command: 'trust list'; project: string }
  | { command: 'trust remove'; project: string; id: string };

export type CliCommand =
  /** Text to print (help, --version); ok false: the command line was not a command, print it on stderr and exit 2. */
  | { command: 'help'; text: string; ok: boolean }
  | { command: 'proxy' | 'dial-stdio'; config: CliConfig }
  | { command: 'login'; config: LoginConfig }
  | { command: 'doctor'; config: DoctorConfig }
  | { command: 'daemon start' | 'daemon run' | 'daemon worker'; config: DaemonConfig }
  | { command: 'daemon stop' | 'daemon status'; slipwayDir: string; json: boolean }
  | { command: 'configure-docker'; uninstall: boolean; config: DaemonConfig; docker: DockerLocations }
  /** The Docker CLI running `docker-slipway`: its arguments, as Docker gave them. */
  | { command: 'docker-cli-plugin'; args: string[] }
  | { command: 'logout'; admin: boolean; credentialsFile: string }
  | { command: 'admin'; config: AdminConfig; request: AdminRequest };

export interface LoadConfigOptions {
  /** Owner the stored credentials must have (default: this process's user). */
  uid?: number;
}

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

/** `90s`, `15m`, `12h`, `30d` in seconds; undefined (with a problem) otherwise. */
export function parseDuration(raw: string, flag: string, problems: string[]): number | undefined {
  const match = /^(\d{1,9})(s|m|h|d)$/.exec(raw.trim());
  if (!match) {
    problems.push(`${flag} must be a whole number with a unit s, m, h or d (e.g. 30d); got '${raw}'`);
    return undefined;
  }
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as 's' | 'm' | 'h' | 'd'];
}

/** Parses the whole command line (command words first) and the environment, reporting every problem at once. */
export function loadConfig(env: Env, argv: readonly string[], options: LoadConfigOptions = {}): CliCommand {
  const [first, ...rest] = argv;
  if (first === undefined) return { command: 'help', text: OVERVIEW, ok: false };
  if (first === '--help' || first === '-h' || first === 'help') return { command: 'help', text: OVERVIEW, ok: true };
  if (first === '--version' || first === 'version') return { command: 'help', text: `slipway ${CLI_VERSION}`, ok: true };
  // Docker's arguments, not ours: the plugin decides what they mean.
  if (first === 'docker-cli-plugin') return { command: 'docker-cli-plugin', args: rest };
  let name = first;
  let tail = rest;
  const subcommands = GROUPS.get(first);
  if (subcommands) {
    const sub = rest[0];
    const choices = subcommands.join(', ');
    if (sub === '--help' || sub === '-h') {
      return { command: 'help', text: subcommands.map((s) => commandHelp(COMMANDS.get(`${first} ${s}`)!)).join('\n\n'), ok: true };
    }
    if (sub === undefined || sub.startsWith('-')) throw new CliError('CONFIG_INVALID', `slipway ${first} needs a subcommand: ${choices} (see slipway ${first} --help)`);
    if (!COMMANDS.has(`${first} ${sub}`)) throw new CliError('CONFIG_INVALID', `unknown command 'slipway ${first} ${sub}'; expected ${first} ${choices.replaceAll(', ', `, ${first} `)}`);
    name = `${first} ${sub}`;
    tail = rest.slice(1);
  }
  const spec = COMMANDS.get(name);
  if (!spec) {
    const known = [...new Set([...COMMANDS.keys()].map((k) => k.split(' ')[0]!))].join(', ');
    throw new CliError('CONFIG_INVALID', `unknown command '${first}'; expected one of ${known} (see slipway --help)`);
  }
  const problems: string[] = [];
  const line = parseCommandLine(spec, tail, problems);
  if (line.help) return { command: 'help', text: commandHelp(spec), ok: true };
  const uid = 'uid' in options ? options.uid : process.getuid?.();
  const command = build(name, line, env, problems, uid, tail);
  if (problems.length > 0) throw new CliError('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return command;
}

function build(name: string, line: CommandLine, env: Env, problems: string[], uid: number | undefined, argv: readonly string[]): CliCommand {
  switch (name) {
    case 'proxy':
    case 'dial-stdio':
      return { command: name, config: tunnelConfig(line, env, problems, uid, name === 'proxy') };
    case 'login':
      return { command: 'login', config: loginConfig(line, env, problems, uid) };
    case 'doctor':
      return { command: 'doctor', config: doctorConfig(line, env, uid) };
    case 'daemon start':
    case 'daemon run':
    case 'daemon worker':
      return { command: name, config: daemonConfig(line, env, problems, uid, argv) };
    case 'daemon stop':
    case 'daemon status':
      return { command: name, slipwayDir: requireSlipwayDir(env, problems), json: line.switches.has('--json') };
    case 'configure-docker': {
      const uninstall = line.switches.has('--uninstall');
      // Undoing needs no gateway or token: only where things are.
      const config = daemonConfig(line, env, uninstall ? [] : problems, uid, argv.filter((a) => a !== '--uninstall'));
      if (config.docker === undefined) problems.push("cannot tell where Docker's configuration is: set DOCKER_CONFIG or HOME");
      return { command: 'configure-docker', uninstall, config, docker: config.docker! };
    }
    case 'logout':
      return { command: 'logout', admin: line.switches.has('--admin'), credentialsFile: requireCredentialsFile(env, problems) };
    default:
      return adminCommand(name, line, env, problems, uid);
  }
}

function requireCredentialsFile(env: Env, problems: string[]): string {
  const file = credentialsPath(env);
  if (file === undefined) problems.push('cannot tell where credentials are stored: neither XDG_CONFIG_HOME nor HOME is set to an absolute path');
  return file ?? '';
}

interface ResolvedConnection extends GatewayConnectionConfig {
  token: string | undefined;
  tokenSource: 'flag or environment' | 'stored credentials' | undefined;
  /** Why no stored token was used although credentials are stored, for the message. */
  storedElsewhere: string | undefined;
}

// The gateway, its CA and the token, from flags and environment first, then from what
// `slipway login` stored. A stored token is only ever sent to the gateway it was stored for:
// pointing SLIPWAY_GATEWAY elsewhere must not hand that gateway our credentials.
function resolveConnection(line: CommandLine, env: Env, problems: string[], uid: number | undefined, tokenFlag: '--token' | '--admin-token'): ResolvedConnection {
  const gatewayRaw = settingOf(line, '--gateway', env);
  const tokenRaw = settingOf(line, tokenFlag, env);
  let stored: StoredCredentials | undefined;
  const file = credentialsPath(env);
  // With both given, nothing stored is needed, and a damaged file does not get in the way.
  if (file !== undefined && (gatewayRaw === undefined || tokenRaw === undefined)) {
    try {
      stored = readCredentials(file, uid);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  const gatewayUrl = parseGatewayUrl(gatewayRaw ?? stored?.gateway, gatewayRaw === undefined && stored !== undefined, problems);
  const sameGateway = stored !== undefined && sameOrigin(stored.gateway, gatewayUrl);
  const storedToken = sameGateway ? (tokenFlag === '--token' ? stored?.token : stored?.adminToken) : undefined;
  const token = tokenRaw ?? storedToken;
  const caPath = settingOf(line, '--ca-cert', env) ?? (sameGateway ? stored?.caCert : undefined);
  const trust = trustedCas(caPath, settingOf(line, '--ca-cert', env) === undefined, env, problems);
  checkProxySettings(env, gatewayUrl, problems);
  return {
    gatewayUrl,
    ca: trust.ca,
    caSources: trust.sources,
    connectTimeoutMs: intSetting(line, '--connect-timeout-ms', env, 15_000, 100, 600_000, problems),
    env,
    slipwayDir: slipwayDirOf(env),
    token,
    tokenSource: tokenRaw !== undefined ? 'flag or environment' : storedToken !== undefined ? 'stored credentials' : undefined,
    storedElsewhere: stored !== undefined && !sameGateway ? stored.gateway : undefined,
  };
}

// Stands in for a gateway URL that is missing or unparseable, so the rest of the configuration can still be checked.
const NO_GATEWAY = new URL('https://invalid.invalid');

function parseGatewayUrl(raw: string | undefined, fromStore: boolean, problems: string[]): URL {
  if (raw === undefined) {
    problems.push('SLIPWAY_GATEWAY (or --gateway) is required, e.g. https://slipway.example.com; or run slipway login --gateway URL once');
    return NO_GATEWAY;
  }
  const where = fromStore ? 'the stored gateway' : 'SLIPWAY_GATEWAY (or --gateway)';
  try {
    const url = new URL(raw);
    if (url.protocol !== 'https:') problems.push(`${where} must be an https:// URL; got '${raw}'`);
    return url;
  } catch {
    problems.push(`${where} must be a URL like https://slipway.example.com; got '${raw}'`);
    return NO_GATEWAY;
  }
}

function sameOrigin(stored: string, url: URL): boolean {
  try {
    return new URL(stored).origin === url.origin;
  } catch {
    return false;
  }
}

// SLIPWAY_CA_CERT (or the stored CA) and NODE_EXTRA_CA_CERTS, added to Node's roots (caBundle.ts says why).
function trustedCas(caPath: string | undefined, fromStore: boolean, env: Env, problems: string[]): { ca: Buffer | undefined; sources: CaSource[] } {
  const sources: CaSource[] = [];
  if (caPath !== undefined) {
    const source = readCaSource(fromStore ? 'the stored CA certificate' : 'SLIPWAY_CA_CERT', caPath, problems);
    if (source) sources.push(source);
  }
  const extra = env['NODE_EXTRA_CA_CERTS'];
  if (extra) {
    const source = readCaSource('NODE_EXTRA_CA_CERTS', extra, problems);
    if (source) sources.push(source);
  }
  return caBundle(sources);
}

// A proxy URL or NO_PROXY that cannot be used is a configuration problem, reported with the rest
// rather than at the first connection.
function checkProxySettings(env: Env, gatewayUrl: URL, problems: string[]): void {
  try {
    proxyFor(env, gatewayUrl);
  } catch (err) {
    problems.push((err as Error).message);
  }
}

/** The user's Slipway directory: $XDG_CONFIG_HOME/slipway, else ~/.config/slipway. */
export function slipwayDirOf(env: Env): string | undefined {
  const file = credentialsPath(env);
  return file === undefined ? undefined : path.dirname(file);
}

function intSetting(line: CommandLine, flag: string, env: Env, fallback: number, min: number, max: number, problems: string[]): number {
  const name = line.spec.flags[flag]?.env ?? flag;
  return readInt({ [name]: settingOf(line, flag, env) }, name, fallback, min, max, problems);
}

function enumSetting<T extends string>(line: CommandLine, flag: string, env: Env, allowed: readonly T[], fallback: T, problems: string[]): T {
  const name = line.spec.flags[flag]?.env ?? flag;
  return readEnum({ [name]: settingOf(line, flag, env) }, name, allowed, fallback, problems);
}

function tunnelConfig(line: CommandLine, env: Env, problems: string[], uid: number | undefined, listens: boolean): CliConfig {
  const platformRaw = settingOf(line, '--platform', env);
  let platform: Platform = 'linux/amd64';
  if (!platformRaw) problems.push(`--platform is required; expected one of ${Platforms.join(', ')}`);
  else if (!isPlatform(platformRaw)) problems.push(`--platform must be one of ${Platforms.join(', ')}; got '${platformRaw}'`);
  else platform = platformRaw;
  const listen: ListenAddress[] = [];
  if (listens) {
    const raw = line.lists.get('--listen') ?? (env['SLIPWAY_LISTEN'] ?? '').split(',').filter(Boolean);
    if (raw.length === 0) problems.push('--listen is required (unix:///PATH.sock or tcp://127.0.0.1:PORT; repeatable)');
    for (const r of raw) {
      const parsed = parseListen(r, problems);
      if (parsed) listen.push(parsed);
    }
  }
  return { ...buildSettings(line, env, problems, uid), platform, listen };
}

// Everything a tunnel client needs, whatever serves it (proxy, dial-stdio, the daemon).
function buildSettings(line: CommandLine, env: Env, problems: string[], uid: number | undefined): Omit<CliConfig, 'platform' | 'listen'> {
  const connection = resolveConnection(line, env, problems, uid, '--token');
  const project = settingOf(line, '--project', env);
  const credential = resolveCredential(line, env, connection, project, problems) ?? { kind: 'token', token: '', source: 'flag or environment' };
  return {
    gatewayUrl: connection.gatewayUrl,
    ca: connection.ca,
    connectTimeoutMs: connection.connectTimeoutMs,
    env,
    credential,
    project,
    transport: enumSetting(line, '--transport', env, Transports, 'auto', problems),
    acquireTimeoutMs: intSetting(line, '--acquire-timeout-ms', env, 600_000, 100, 24 * 3_600_000, problems),
    buildIdleMs: intSetting(line, '--build-idle-ms', env, 30_000, 0, 24 * 3_600_000, problems),
    keepaliveMs: intSetting(line, '--keepalive-ms', env, 20_000, 0, 3_600_000, problems),
    logLevel: enumSetting(line, '--log-level', env, LogLevels, 'warn', problems),
    caSources: connection.caSources ?? [],
    slipwayDir: connection.slipwayDir,
  };
}

// The daemon serves every platform from the user's Slipway directory; its flags are passed on
// to the processes it starts.
function daemonConfig(line: CommandLine, env: Env, problems: string[], uid: number | undefined, argv: readonly string[]): DaemonConfig {
  const settings = buildSettings(line, env, problems, uid);
  const slipwayDir = requireSlipwayDir(env, problems);
  return { ...settings, slipwayDir, platforms: platformsNativeFirst(), passThrough: [...argv], docker: dockerLocations(env, slipwayDir) };
}

function requireSlipwayDir(env: Env, problems: string[]): string {
  const dir = slipwayDirOf(env);
  if (dir === undefined) problems.push('cannot tell where the Slipway directory is: neither XDG_CONFIG_HOME nor HOME is set to an absolute path');
  return dir ?? '';
}

// The project token: given, stored, or (in a CI job) the job's OIDC identity to exchange.
function resolveCredential(line: CommandLine, env: Env, connection: ResolvedConnection, project: string | undefined, problems: string[]): ProjectCredential | undefined {
  if (connection.token !== undefined && connection.tokenSource !== undefined) {
    return { kind: 'token', token: connection.token, source: connection.tokenSource };
  }
  const ci = detectCi(env);
  if (ci !== undefined) {
    const audience = settingOf(line, '--oidc-audience', env) ?? DEFAULT_OIDC_AUDIENCE;
    if (project === undefined) {
      problems.push(`SLIPWAY_PROJECT (or --project) is required to exchange this ${CI_NAMES[ci]} job's OIDC identity for a token (no SLIPWAY_TOKEN is set and none is stored)`);
    }
    return { kind: 'oidc', ci, audience, project: project ?? '' };
  }
  const elsewhere = connection.storedElsewhere ? ` (the stored credentials are for ${connection.storedElsewhere}, not ${connection.gatewayUrl.origin})` : '';
  problems.push(`no project token${elsewhere}: set SLIPWAY_TOKEN (or --token), run slipway login, or run in a CI job with an OIDC identity (GitHub Actions, GitLab CI, CircleCI, Buildkite)`);
  return undefined;
}

// doctor reports configuration problems as its first check instead of refusing to run: most of
// what it checks (DNS, the proxy, TLS) needs only the gateway's address.
function doctorConfig(line: CommandLine, env: Env, uid: number | undefined): DoctorConfig {
  const problems: string[] = [];
  const connection = resolveConnection(line, env, problems, uid, '--token');
  const project = settingOf(line, '--project', env);
  const credential = resolveCredential(line, env, connection, project, problems);
  const platforms: Platform[] = [];
  for (const raw of line.lists.get('--platform') ?? (env['SLIPWAY_PLATFORM'] ? env['SLIPWAY_PLATFORM'].split(',') : [...Platforms])) {
    if (isPlatform(raw)) platforms.push(raw);
    else problems.push(`--platform must be one of ${Platforms.join(', ')}; got '${raw}'`);
  }
  return {
    gatewayUrl: connection.gatewayUrl,
    gatewayKnown: connection.gatewayUrl.hostname !== NO_GATEWAY.hostname,
    ca: connection.ca,
    caSources: connection.caSources ?? [],
    connectTimeoutMs: connection.connectTimeoutMs,
    env,
    slipwayDir: connection.slipwayDir,
    problems,
    credential,
    project,
    transport: enumSetting(line, '--transport', env, Transports, 'auto', problems),
    keepaliveMs: intSetting(line, '--keepalive-ms', env, 20_000, 0, 3_600_000, problems),
    platforms,
    acquireTimeoutMs: intSetting(line, '--acquire-timeout-ms', env, 30_000, 100, 24 * 3_600_000, problems),
    json: line.switches.has('--json'),
    docker: connection.slipwayDir === undefined ? undefined : dockerLocations(env, connection.slipwayDir),
  };
}

function loginConfig(line: CommandLine, env: Env, problems: string[], uid: number | undefined): LoginConfig {
  const credentialsFile = requireCredentialsFile(env, problems);
  let stored: StoredCredentials | undefined;
  if (credentialsFile !== '') {
    try {
      stored = readCredentials(credentialsFile, uid);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  const gatewayRaw = settingOf(line, '--gateway', env);
  const gatewayUrl = parseGatewayUrl(gatewayRaw ?? stored?.gateway, gatewayRaw === undefined && stored !== undefined, problems);
  const sameGateway = stored !== undefined && sameOrigin(stored.gateway, gatewayUrl);
  const caGiven = settingOf(line, '--ca-cert', env);
  // Stored as an absolute path: later commands run from other directories.
  const caCertPath = caGiven !== undefined ? path.resolve(caGiven) : sameGateway ? stored?.caCert : undefined;
  const flagToken = line.values.get('--token');
  const fromStdin = line.switches.has('--token-stdin');
  if (flagToken !== undefined && fromStdin) problems.push('give the token with --token or --token-stdin, not both');
  if (flagToken !== undefined && flagToken.trim() === '') problems.push('--token is empty');
  const trust = trustedCas(caCertPath, caGiven === undefined, env, problems);
  checkProxySettings(env, gatewayUrl, problems);
  return {
    gatewayUrl,
    ca: trust.ca,
    caSources: trust.sources,
    connectTimeoutMs: intSetting(line, '--connect-timeout-ms', env, 15_000, 100, 600_000, problems),
    env,
    slipwayDir: slipwayDirOf(env),
    admin: line.switches.has('--admin'),
    token: flagToken !== undefined ? { from: 'flag', token: flagToken.trim() } : fromStdin ? { from: 'stdin' } : { from: 'prompt' },
    credentialsFile,
    caCertPath,
    stored,
  };
}

function adminCommand(name: string, line: CommandLine, env: Env, problems: string[], uid: number | undefined): CliCommand {
  const connection = resolveConnection(line, env, problems, uid, '--admin-token');
  if (connection.token === undefined) {
    const elsewhere = connection.storedElsewhere ? ` (the stored credentials are for ${connection.storedElsewhere}, not ${connection.gatewayUrl.origin})` : '';
    problems.push(`no admin token${elsewhere}: set SLIPWAY_ADMIN_TOKEN (or --admin-token), or run slipway login --admin`);
  }
  const config: AdminConfig = {
    gatewayUrl: connection.gatewayUrl,
    ca: connection.ca,
    caSources: connection.caSources ?? [],
    connectTimeoutMs: connection.connectTimeoutMs,
    env,
    slipwayDir: connection.slipwayDir,
    adminToken: connection.token ?? '',
    json: line.switches.has('--json'),
  };
  const [a0 = '', a1 = ''] = line.args;
  return { command: 'admin', config, request: adminRequest(name, line, a0, a1, problems) };
}

function adminRequest(name: string, line: CommandLine, a0: string, a1: string, problems: string[]): AdminRequest {
  switch (name) {
    case 'projects create':
      return { command: name, name: a0, isolateUntrusted: line.switches.has('--isolate-untrusted') };
    case 'projects list':
      return { command: name };
    case 'projects delete':
      return { command: name, name: a0 };
    case 'tokens create': {
      const ttl = line.values.get('--ttl');
      return {
        command: name,
        project: a0,
        // Values are the gateway's to judge: it names every problem, in its own terms.
        scopes: line.lists.get('--scope'),
        ttlSec: ttl === undefined ? undefined : parseDuration(ttl, '--ttl', problems),
        description: line.values.get('--description'),
      };
    }
    case 'tokens list':
      return { command: name, project: a0 };
    case 'tokens revoke':
      return { command: name, id: a0 };
    case 'trust add':
      return { command: name, project: a0, policy: trustPolicyInput(line, problems) };
    case 'trust list':
      return { command: name, project: a0 };
    case 'trust remove':
      return { command: name, project: a0, id: a1 };
    default:
      throw new CliError('INTERNAL', `no handler for slipway ${name}`);
  }
}

function trustPolicyInput(line: CommandLine, problems: string[]): TrustPolicyInput {
  const issuer = line.values.get('--issuer');
  const audience = line.values.get('--audience');
  if (issuer === undefined) problems.push("--issuer is required (the CI's OIDC issuer URL)");
  if (audience === undefined) problems.push(`--audience is required (the CLI asks CI for '${DEFAULT_OIDC_AUDIENCE}' unless SLIPWAY_OIDC_AUDIENCE says otherwise)`);
  // No condition at all is the gateway's to refuse (or to accept with --allow-any-subject).
  const conditions = claimPatterns(line.lists.get('--condition') ?? [], '--condition', problems);
  const policy: TrustPolicyInput = { issuer, audience, conditions };
  const untrusted = line.lists.get('--untrusted-when');
  if (untrusted !== undefined) policy.untrustedWhen = claimPatterns(untrusted, '--untrusted-when', problems);
  if (line.switches.has('--allow-any-subject')) policy.allowAnySubject = true;
  const scopes = line.lists.get('--scope');
  if (scopes !== undefined) policy.scopes = scopes;
  const ttl = line.values.get('--token-ttl');
  if (ttl !== undefined) policy.tokenTtlSec = parseDuration(ttl, '--token-ttl', problems);
  const id = line.values.get('--id');
  if (id !== undefined) policy.id = id;
  return policy;
}

function claimPatterns(values: string[], flag: string, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) {
      problems.push(`${flag} must be CLAIM=PATTERN (e.g. ref=refs/heads/main); got '${value}'`);
      continue;
    }
    const claim = value.slice(0, eq);
    if (claim in out) problems.push(`${flag} names claim '${claim}' twice; a claim has one pattern`);
    out[claim] = value.slice(eq + 1);
  }
  return out;
}
