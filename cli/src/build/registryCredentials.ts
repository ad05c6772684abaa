import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Env } from '@slipway/proto';
import { CliError } from '../cliError.js';
import type { ProxyEnv } from '../proxySettings.js';

// The user's registry credentials, found where and as the Docker CLI finds them:
// $DOCKER_CONFIG/config.json (else ~/.docker/config.json), a per-registry credHelpers entry first,
// else the credsStore, else the file's own `auths`. A credential helper is the
// docker-credential-<name> program on PATH, asked `get` with the registry on stdin.

/** Docker Hub's credentials live under this key, whatever name the registry was reached by. */
export const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', DOCKER_HUB_KEY]);
// What helpers print (on stdout, exiting non-zero) when they hold nothing for the registry.
const HELPER_NOT_FOUND = 'credentials not found in native keychain';
// The username a helper gives for an identity (OAuth refresh) token instead of a password.
const IDENTITY_TOKEN_USERNAME = '<token>';
const HELPER_TIMEOUT_MS = 60_000;
const HELPER_OUTPUT_LIMIT = 1024 * 1024;

export type Credential =
  | { kind: 'basic'; username: string; password: string }
  /** An OAuth refresh token (docker login with an identity provider): exchanged for a bearer token. */
  | { kind: 'identityToken'; token: string; username: string };

export interface RegistryCredentials {
  /** Where the configuration was read from (undefined when there is none). */
  readonly configFile: string | undefined;
  /**
   * The proxy variables (HTTPS_PROXY, NO_PROXY, ...) of the environment the credentials came
   * from: the CLI reaches a registry itself as it reaches the gateway.
   */
  readonly proxyEnv?: ProxyEnv;
  /** The credential for a registry host (host[:port], as in image references); undefined for anonymous. */
  forHost(host: string): Promise<Credential | undefined>;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

interface DockerConfig {
  auths: Map<string, AuthEntry>;
  credHelpers: Map<string, string>;
  credsStore: string | undefined;
}

/** The key a registry's credentials are stored under: Docker Hub's names all map to DOCKER_HUB_KEY. */
export function credentialKey(host: string): string {
  return DOCKER_HUB_HOSTS.has(host) ? DOCKER_HUB_KEY : host;
}

/** The Docker CLI's reading of an `auths` key: its host, without scheme or path. */
function hostOfKey(key: string): string {
  const bare = key.replace(/^https?:\/\//, '');
  return bare.split('/')[0] ?? bare;
}

export function dockerConfigFile(env: Env): string | undefined {
  const dir = env['DOCKER_CONFIG'];
  if (dir) return path.join(path.resolve(dir), 'config.json');
  const home = env['HOME'] || homeOfUser();
  return home ? path.join(home, '.docker', 'config.json') : undefined;
}

/** The user's home from the password database, as Go's os.UserHomeDir falls back to; undefined without one. */
function homeOfUser(): string | undefined {
  try {
    return os.userInfo().homedir || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads the Docker configuration now (a malformed one is a CONFIG_INVALID error here, before any
 * build starts); credential helpers run later, once per registry asked for.
 */
export function loadRegistryCredentials(env: Env): RegistryCredentials {
  const file = dockerConfigFile(env);
  const config = file === undefined ? undefined : readDockerConfig(file);
  const asked = new Map<string, Promise<Credential | undefined>>();
  return {
    configFile: config === undefined ? undefined : file,
    proxyEnv: env,
    forHost(host: string): Promise<Credential | undefined> {
      if (config === undefined || file === undefined) return Promise.resolve(undefined);
      const key = credentialKey(host);
      let answer = asked.get(key);
      if (answer === undefined) {
        answer = lookUp(config, file, key, env);
        asked.set(key, answer);
        // A failed helper is asked again next time: it may have been a passing fault.
        answer.catch(() => asked.delete(key));
      }
      return answer;
    },
  };
}

function readDockerConfig(file: string): DockerConfig | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError('CONFIG_INVALID', `cannot read Docker's configuration ${file}: ${(err as Error).message}`, { cause: err });
  }
  // The Docker CLI takes an empty file as an empty configuration.
  if (text.trim() === '') return { auths: new Map(), credHelpers: new Map(), credsStore: undefined };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CliError('CONFIG_INVALID', `Docker's configuration ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const problems: string[] = [];
  if (!isObject(parsed)) {
    throw new CliError('CONFIG_INVALID', `Docker's configuration ${file}: expected a JSON object, got ${describe(parsed)}`);
  }
  const auths = new Map<string, AuthEntry>();
  if (parsed.auths !== undefined && parsed.auths !== null) {
    if (!isObject(parsed.auths)) problems.push(`"auths" must be an object of registry -> credentials, got ${describe(parsed.auths)}`);
    else {
      for (const [key, value] of Object.entries(parsed.auths)) {
        const entry = authEntry(key, value, problems);
        if (entry) auths.set(key, entry);
      }
    }
  }
  const credHelpers = new Map<string, string>();
  if (parsed.credHelpers !== undefined && parsed.credHelpers !== null) {
    if (!isObject(parsed.credHelpers)) problems.push(`"credHelpers" must be an object of registry -> helper name, got ${describe(parsed.credHelpers)}`);
    else {
      for (const [key, value] of Object.entries(parsed.credHelpers)) {
        if (typeof value !== 'string') problems.push(`credHelpers["${key}"] must be a helper name (a string), got ${describe(value)}`);
        else if (!validHelperName(value)) problems.push(`credHelpers["${key}"]: ${JSON.stringify(value)} is not a helper name (docker-credential-<name> on PATH)`);
        else credHelpers.set(key, value);
      }
    }
  }
  let credsStore: string | undefined;
  if (parsed.credsStore !== undefined && parsed.credsStore !== null && parsed.credsStore !== '') {
    if (typeof parsed.credsStore !== 'string') problems.push(`"credsStore" must be a helper name (a string), got ${describe(parsed.credsStore)}`);
    else if (!validHelperName(parsed.credsStore)) problems.push(`"credsStore": ${JSON.stringify(parsed.credsStore)} is not a helper name (docker-credential-<name> on PATH)`);
    else credsStore = parsed.credsStore;
  }
  if (problems.length > 0) {
    throw new CliError('CONFIG_INVALID', `Docker's configuration ${file} is not usable:\n  - ${problems.join('\n  - ')}`);
  }
  return { auths, credHelpers, credsStore };
}

function authEntry(key: string, value: unknown, problems: string[]): AuthEntry | undefined {
  if (!isObject(value)) {
    problems.push(`auths["${key}"] must be an object, got ${describe(value)}`);
    return undefined;
  }
  const entry: AuthEntry = {};
  for (const field of ['auth', 'username', 'password', 'identitytoken', 'registrytoken'] as const) {
    const v = value[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') {
      problems.push(`auths["${key}"].${field} must be a string, got ${describe(v)}`);
      continue;
    }
    entry[field] = v;
  }
  if (entry.auth) {
    // "auth" is base64 of user:password, as docker login writes it; it wins over the separate fields.
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(entry.auth) || colon < 0) {
      problems.push(`auths["${key}"].auth must be base64 of USER:PASSWORD (as docker login writes it); it is not`);
      return undefined;
    }
    entry.username = decoded.slice(0, colon);
    entry.password = decoded.slice(colon + 1);
  }
  return entry;
}

async function lookUp(config: DockerConfig, file: string, key: string, env: Env): Promise<Credential | undefined> {
  const helper = config.credHelpers.get(key) ?? config.credsStore;
  if (helper !== undefined) return runHelper(helper, key, file, env);
  const entry = config.auths.get(key) ?? [...config.auths].find(([k]) => hostOfKey(k) === key)?.[1];
  if (entry === undefined) return undefined;
  if (entry.identitytoken) return { kind: 'identityToken', token: entry.identitytoken, username: entry.username ?? '' };
  if (entry.username || entry.password) return { kind: 'basic', username: entry.username ?? '', password: entry.password ?? '' };
  return undefined;
}

function runHelper(name: string, key: string, file: string, env: Env): Promise<Credential | undefined> {
  const program = `docker-credential-${name}`;
  const failure = (why: string, cause?: unknown): CliError =>
    new CliError('CONFIG_INVALID', `the credential helper ${program} (from ${file}) failed to give the credentials for ${key}: ${why}`, { cause });
  return new Promise<Credential | undefined>((resolve, reject) => {
    // The helper gets the whole environment the CLI was given: helpers for cloud registries read
    // their own settings from it (profiles, regions, agent sockets).
    const child = spawn(program, ['get'], { env: env as NodeJS.ProcessEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let settled = false;
    const finish = (error: CliError | null, value?: Credential): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(value);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(failure(`it did not answer within ${HELPER_TIMEOUT_MS / 1000} s`));
    }, HELPER_TIMEOUT_MS);
    child.stdout.on('data', (c: Buffer) => {
      outBytes += c.length;
      if (outBytes <= HELPER_OUTPUT_LIMIT) out.push(c);
    });
    child.stderr.on('data', (c: Buffer) => {
      errBytes += c.length;
      if (errBytes <= HELPER_OUTPUT_LIMIT) err.push(c);
    });
    child.stdin.on('error', () => {
      // A helper that exits without reading stdin is reported by its exit status.
    });
    child.on('error', (e: NodeJS.ErrnoException) =>
      finish(failure(e.code === 'ENOENT' ? `${program} was not found on PATH` : e.message, e)),
    );
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8').trim();
      const stderr = Buffer.concat(err).toString('utf8').trim();
      if (code !== 0) {
        // Helpers say "not found" on stdout with a non-zero exit: that registry is anonymous.
        if (stdout.includes(HELPER_NOT_FOUND)) {
          finish(null, undefined);
          return;
        }
        const shown = [stderr && `stderr: ${stderr}`, stdout && `stdout: ${stdout}`].filter(Boolean).join('; ');
        finish(failure(`it exited with ${signal ? `signal ${signal}` : `code ${code}`}${shown ? ` (${shown})` : ' and printed nothing'}`));
        return;
      }
      try {
        finish(null, parseHelperAnswer(stdout, failure));
      } catch (e) {
        finish(e as CliError);
      }
    });
    child.stdin.end(key);
  });
}

function parseHelperAnswer(stdout: string, failure: (why: string) => CliError): Credential | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw failure(`expected JSON {"Username": ..., "Secret": ...} on stdout, got ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  if (!isObject(parsed) || typeof parsed.Secret !== 'string' || (parsed.Username !== undefined && typeof parsed.Username !== 'string')) {
    // The answer holds a secret: name what is wrong with it, never show it.
    throw failure(`expected JSON {"Username": string, "Secret": string} on stdout, got an answer with ${isObject(parsed) ? `keys ${Object.keys(parsed).join(', ') || 'none'}` : describe(parsed)}`);
  }
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  if (parsed.Secret === '' && username === '') return undefined;
  if (username === IDENTITY_TOKEN_USERNAME) return { kind: 'identityToken', token: parsed.Secret, username: '' };
  return { kind: 'basic', username, password: parsed.Secret };
}

function validHelperName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** loadRegistryCredentials for command-line checking: a malformed configuration joins the other problems. */
export function registryCredentialsOf(env: Env, problems: string[]): RegistryCredentials | undefined {
  try {
    return loadRegistryCredentials(env);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    problems.push(err.message);
    return undefined;
  }
}
