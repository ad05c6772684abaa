import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { isPlatform, type Env, type Platform } from '@slipway/proto';
import type { CommandLine } from '../commandLine.js';
import { isProgressMode, PROGRESS_MODES, type ProgressMode } from './progressDisplay.js';
import { cacheImportsAttr, cacheOptionsOf, platformCacheOf, type CacheOptions } from './cacheOptions.js';
import { sshSourcesOf, type SshSource } from './sshSources.js';
import { outputOf, type BuildOutput } from './outputOptions.js';
import { fields } from './csvFields.js';
import { registryCredentialsOf, type RegistryCredentials } from './registryCredentials.js';

export type { BuildOutput } from './outputOptions.js';

// What `slipway build` was asked to do, from its command line (buildx's flags and meanings),
// checked as a whole: every problem is reported at once, and flags Slipway does not do yet are
// refused by name rather than ignored.

export interface BuildSecret {
  id: string;
  data: Buffer;
}

export interface BuildOptions {
  contextDir: string;
  /** The Dockerfile's folder and its name there. */
  dockerfileDir: string;
  dockerfileName: string;
  tags: string[];
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  target: string | undefined;
  platforms: Platform[];
  output: BuildOutput;
  progress: ProgressMode;
  noCache: boolean;
  /** --pull: base images resolved at the registry even when the builder has them. */
  pull: boolean;
  cache: CacheOptions;
  ssh: SshSource[];
  secrets: BuildSecret[];
  /** The user's Docker registry credentials; undefined when the configuration could not be read. */
  registryCredentials?: RegistryCredentials | undefined;
}

function parseSecret(raw: string, env: Env, problems: string[]): BuildSecret | undefined {
  const f = fields(raw);
  const id = f.get('id');
  if (!id) {
    problems.push(`--secret needs id=ID; got '${raw}'`);
    return undefined;
  }
  const type = f.get('type');
  const src = f.get('src') ?? f.get('source');
  const envName = f.get('env') ?? (type === 'env' ? id : undefined);
  if (src !== undefined && envName !== undefined) {
    problems.push(`--secret id=${id}: give src= or env=, not both`);
    return undefined;
  }
  if (envName !== undefined || type === 'env') {
    const value = env[envName ?? id];
    if (value === undefined) {
      problems.push(`--secret id=${id}: environment variable ${envName ?? id} is not set`);
      return undefined;
    }
    return { id, data: Buffer.from(value) };
  }
  // buildx: with neither, the id names an environment variable if one is set, else a file of that name.
  const file = src ?? id;
  if (src === undefined && env[id] !== undefined) return { id, data: Buffer.from(env[id]!) };
  try {
    return { id, data: readFileSync(file) };
  } catch (err) {
    problems.push(`--secret id=${id}: cannot read ${file}: ${(err as Error).message}`);
    return undefined;
  }
}

function keyValues(values: string[], flag: string, env: Env | undefined, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of values) {
    const eq = raw.indexOf('=');
    if (eq === 0 || raw === '') {
      problems.push(`${flag} must be KEY=VALUE; got '${raw}'`);
      continue;
    }
    if (eq > 0) out[raw.slice(0, eq)] = raw.slice(eq + 1);
    // A build arg without a value takes it from the environment, or is left out.
    else if (env && env[raw] !== undefined) out[raw] = env[raw]!;
    else if (!env) problems.push(`${flag} must be KEY=VALUE; got '${raw}'`);
  }
  return out;
}

export function buildOptionsOf(line: CommandLine, env: Env, cwd: string, nativePlatform: Platform, problems: string[]): BuildOptions {
  const contextArg = line.args[0] ?? '.';
  const contextDir = path.resolve(cwd, contextArg);
  if (contextArg === '-' || /^[a-z]+:\/\//.test(contextArg)) problems.push(`the context must be a local folder; got '${contextArg}' (stdin and URL contexts are not supported yet)`);
  else if (!statSync(contextDir, { throwIfNoEntry: false })?.isDirectory()) problems.push(`the context ${contextDir} is not a folder`);
  const dockerfileArg = line.values.get('--file') ?? line.values.get('-f');
  const dockerfilePath = dockerfileArg === undefined ? path.join(contextDir, 'Dockerfile') : path.resolve(cwd, dockerfileArg);
  if (dockerfileArg === '-') problems.push('a Dockerfile on stdin (-f -) is not supported yet');
  else if (!statSync(dockerfilePath, { throwIfNoEntry: false })?.isFile()) problems.push(`no Dockerfile at ${dockerfilePath}`);

  const platforms: Platform[] = [];
  for (const raw of [...(line.lists.get('--platform') ?? [])].flatMap((p) => p.split(',')).map((p) => p.trim()).filter((p) => p !== '')) {
    if (!isPlatform(raw)) problems.push(`--platform ${raw}: Slipway builds linux/amd64 and linux/arm64`);
    else if (!platforms.includes(raw)) platforms.push(raw);
  }
  if (platforms.length === 0) platforms.push(nativePlatform);

  const output = outputOf(line, platforms, nativePlatform, env, problems);

  // buildx's default comes from BUILDKIT_PROGRESS, else auto.
  const progressFlag = line.values.get('--progress');
  const progress = progressFlag ?? env['BUILDKIT_PROGRESS'] ?? 'auto';
  if (!isProgressMode(progress)) problems.push(`${progressFlag === undefined ? 'BUILDKIT_PROGRESS' : '--progress'} must be one of ${PROGRESS_MODES.join(', ')}; got '${progress}'`);

  const ssh = sshSourcesOf(line.lists.get('--ssh') ?? [], env, problems);

  const secrets = (line.lists.get('--secret') ?? []).map((raw) => parseSecret(raw, env, problems)).filter((s): s is BuildSecret => s !== undefined);
  const ids = secrets.map((s) => s.id);
  const duplicate = ids.find((id, i) => ids.indexOf(id) !== i);
  if (duplicate) problems.push(`--secret id=${duplicate} is given twice`);

  const buildArgs = keyValues(line.lists.get('--build-arg') ?? [], '--build-arg', env, problems);
  return {
    contextDir,
    dockerfileDir: path.dirname(dockerfilePath),
    dockerfileName: path.basename(dockerfilePath),
    tags: [...(line.lists.get('--tag') ?? []), ...(line.lists.get('-t') ?? [])],
    buildArgs,
    labels: keyValues(line.lists.get('--label') ?? [], '--label', undefined, problems),
    target: line.values.get('--target'),
    platforms,
    output,
    progress: isProgressMode(progress) ? progress : 'auto',
    noCache: line.switches.has('--no-cache'),
    pull: line.switches.has('--pull'),
    cache: cacheOptionsOf(line, buildArgs, problems),
    ssh,
    secrets,
    registryCredentials: registryCredentialsOf(env, problems),
  };
}

/** The solve's frontend attributes for one platform (the dockerfile.v0 frontend's names). */
export function frontendAttrsOf(options: BuildOptions, platform: Platform): Record<string, string> {
  const attrs: Record<string, string> = { filename: options.dockerfileName, platform };
  if (options.target) attrs['target'] = options.target;
  if (options.noCache) attrs['no-cache'] = '';
  if (options.pull) attrs['image-resolve-mode'] = 'pull';
  const cacheImports = cacheImportsAttr(platformCacheOf(options.cache, platform, options.platforms));
  if (cacheImports !== undefined) attrs['cache-imports'] = cacheImports;
  for (const [k, v] of Object.entries(options.buildArgs)) attrs[`build-arg:${k}`] = v;
  for (const [k, v] of Object.entries(options.labels)) attrs[`label:${k}`] = v;
  return attrs;
}
