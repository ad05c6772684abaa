import type { Env, Platform } from '@slipway/proto';
import type { CommandLine } from '../commandLine.js';
import { fields } from './csvFields.js';
import { dockerHostOf } from '../dockerLocations.js';
import { dockerEndpointOf } from './dockerLoad.js';
import { parseImageReference } from './imageReference.js';

// What the build delivers, from --output, --push, --load, --metadata-file and --iidfile, with
// buildx's meanings: --push is type=image,push=true named by the tags, --load is type=docker
// loaded into the local Docker, and the combinations buildx refuses are refused here, with why.

/** Image exporter options passed through to BuildKit as they are (buildx passes them too). */
const IMAGE_PASS_THROUGH = ['oci-mediatypes', 'compression', 'compression-level', 'force-compression', 'registry.insecure'];

export type OutputTarget =
  | { type: 'local'; dest: string }
  | { type: 'tar'; dest: string }
  /** Into the builder's image store, and to the registry when `push`. */
  | { type: 'image'; names: string[]; push: boolean; attrs: Record<string, string> }
  /** A `docker load` tarball: written to `dest`, or loaded into the Docker Engine at `dockerHost`. */
  | { type: 'docker'; names: string[]; dest: string; attrs: Record<string, string> }
  | { type: 'docker'; names: string[]; load: { dockerHost: string; platform: Platform }; attrs: Record<string, string> }
  | { type: 'oci'; names: string[]; dest: string; attrs: Record<string, string> }
  | { type: 'none' };

export type BuildOutput = OutputTarget & {
  /** --metadata-file: the result's metadata as JSON. */
  metadataFile?: string | undefined;
  /** --iidfile: the image ID (config digest). */
  iidFile?: string | undefined;
};

function truthy(value: string | undefined): boolean {
  // buildx: `push` alone or push=true; anything but a boolean is an error reported by the caller.
  return value === '' || value === 'true' || value === '1';
}

function checkBoolean(type: string, key: string, value: string | undefined, problems: string[]): void {
  if (value !== undefined && !['', 'true', 'false', '1', '0'].includes(value)) problems.push(`--output type=${type}: ${key} must be true or false; got '${value}'`);
}

function unknownKeys(type: string, f: Map<string, string>, known: string[], problems: string[]): void {
  const unknown = [...f.keys()].filter((k) => k !== 'type' && !known.includes(k) && !k.startsWith('annotation'));
  if (unknown.length > 0) problems.push(`--output type=${type}: unknown option(s) ${unknown.join(', ')}; expected ${known.join(', ')}`);
}

function namesOf(f: Map<string, string>, tags: string[]): string[] {
  const name = f.get('name');
  // buildx: the tags name the image unless the output names it itself.
  return name !== undefined && name !== '' ? name.split(',').map((n) => n.trim()).filter((n) => n !== '') : tags;
}

function passThrough(f: Map<string, string>, keys: string[]): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const [k, v] of f) if (keys.includes(k) || k.startsWith('annotation')) attrs[k] = v;
  return attrs;
}

interface Context {
  tags: string[];
  platforms: Platform[];
  nativePlatform: Platform;
  env: Env;
}

function parseOutput(raw: string, ctx: Context, problems: string[]): OutputTarget {
  // buildx: a value without '=' is a local folder.
  if (!raw.includes('=')) return raw === '-' ? (problems.push('--output - (a tarball on stdout) is not supported; give type=tar,dest=FILE'), { type: 'none' }) : { type: 'local', dest: raw };
  const f = fields(raw);
  const type = f.get('type') ?? 'local';
  const dest = f.get('dest');
  switch (type) {
    case 'local':
    case 'tar': {
      unknownKeys(type, f, ['dest'], problems);
      if (!dest) {
        problems.push(`--output type=${type} needs dest=PATH; got '${raw}'`);
        return { type: 'none' };
      }
      if (dest === '-') problems.push(`--output type=${type},dest=- (stdout) is not supported; give a path`);
      return { type, dest };
    }
    case 'image':
    case 'registry': {
      // buildx: type=registry is type=image,push=true.
      const known = ['name', 'push', ...IMAGE_PASS_THROUGH];
      unknownKeys(type, f, known, problems);
      checkBoolean(type, 'push', f.get('push'), problems);
      const push = type === 'registry' || truthy(f.get('push'));
      const names = namesOf(f, ctx.tags);
      if (push && names.length === 0) problems.push(`--output type=${type}${type === 'image' ? ',push=true' : ''} needs a name to push to: give name=REF or -t REF`);
      return { type: 'image', names, push, attrs: passThrough(f, IMAGE_PASS_THROUGH) };
    }
    case 'docker':
    case 'oci': {
      const tarballOptions = IMAGE_PASS_THROUGH.filter((k) => k !== 'registry.insecure');
      unknownKeys(type, f, ['dest', 'name', ...tarballOptions], problems);
      const names = namesOf(f, ctx.tags);
      const attrs = passThrough(f, tarballOptions);
      if (dest === '-') {
        problems.push(`--output type=${type},dest=- (stdout) is not supported; give a path`);
        return { type: 'none' };
      }
      if (type === 'docker' && (dest === undefined || dest === '')) {
        // buildx: type=docker without dest loads the image into the local Docker (what --load is).
        return loadOutput(ctx, names, attrs, problems, `--output ${raw}`);
      }
      if (dest === undefined || dest === '') {
        problems.push(`--output type=oci needs dest=FILE; got '${raw}'`);
        return { type: 'none' };
      }
      if (type === 'docker' && ctx.platforms.length > 1) {
        problems.push(`--output type=docker holds one platform's image; got ${ctx.platforms.length} platforms (${ctx.platforms.join(', ')}): use type=oci, --push, or one --platform`);
      }
      return type === 'docker' ? { type, names, dest, attrs } : { type, names, dest, attrs };
    }
    default:
      problems.push(`--output type=${type} is not supported; expected local, tar, image, registry, docker or oci`);
      return { type: 'none' };
  }
}

function loadOutput(ctx: Context, names: string[], attrs: Record<string, string>, problems: string[], asked: string): OutputTarget {
  if (names.length === 0) problems.push(`${asked} loads an image into Docker and needs a name for it: give -t NAME`);
  // As buildx: with several platforms only the image Docker here can run is loaded.
  const platform = ctx.platforms.length === 1 ? ctx.platforms[0]! : ctx.platforms.includes(ctx.nativePlatform) ? ctx.nativePlatform : undefined;
  if (platform === undefined) {
    problems.push(`${asked} loads this machine's platform (${ctx.nativePlatform}) into Docker, but it is not among the platforms built (${ctx.platforms.join(', ')})`);
    return { type: 'none' };
  }
  const dockerHost = dockerHostOf(ctx.env);
  const endpoint = dockerEndpointOf(dockerHost);
  if (typeof endpoint === 'string') problems.push(endpoint);
  return { type: 'docker', names, load: { dockerHost, platform }, attrs };
}

/** The one output asked for by --output/-o, --push and --load, checked against the platforms built. */
export function outputOf(line: CommandLine, platforms: Platform[], nativePlatform: Platform, env: Env, problems: string[]): BuildOutput {
  const ctx: Context = { tags: [...(line.lists.get('--tag') ?? []), ...(line.lists.get('-t') ?? [])], platforms, nativePlatform, env };
  const outputs = [...(line.lists.get('--output') ?? []), ...(line.lists.get('-o') ?? [])];
  const push = line.switches.has('--push');
  const load = line.switches.has('--load');
  if (outputs.length > 1) problems.push(`only one --output is supported; got ${outputs.length}`);
  let output: OutputTarget = outputs.length === 0 ? { type: 'none' } : parseOutput(outputs[0]!, ctx, problems);
  if (push && load) problems.push('--push and --load cannot be used together: push to a registry, or load into the local Docker');
  if (push) {
    if (outputs.length === 0) {
      if (ctx.tags.length === 0) problems.push('--push needs a name to push to: give -t REF');
      output = { type: 'image', names: ctx.tags, push: true, attrs: {} };
    } else if (output.type === 'image') {
      if (output.names.length === 0) problems.push('--push needs a name to push to: give -t REF or name=REF');
      output = { ...output, push: true };
    } else if (outputs.length === 1) {
      problems.push(`--push and --output type=${fields(outputs[0]!).get('type') ?? 'local'} cannot be used together: --push sends an image to a registry (type=image,push=true)`);
    }
  }
  if (load) {
    if (outputs.length === 0) output = loadOutput(ctx, ctx.tags, {}, problems, '--load');
    else if (!(output.type === 'docker' && 'load' in output)) {
      const f = outputs.length === 1 ? fields(outputs[0]!) : new Map<string, string>();
      const type = f.get('type') ?? 'local';
      problems.push(
        type === 'docker'
          ? '--load and --output type=docker,dest=FILE cannot be used together: --load loads the image into Docker, dest= writes it to a file; give one'
          : `--load and --output type=${type} cannot be used together: --load is type=docker, loaded into the local Docker`,
      );
    }
  }
  if (output.type === 'image' && output.push) {
    for (const name of output.names) {
      try {
        parseImageReference(name);
      } catch (err) {
        problems.push(`--push: ${(err as Error).message}`);
      }
    }
  }
  const metadataFile = line.values.get('--metadata-file');
  const iidFile = line.values.get('--iidfile');
  for (const [flag, value] of [['--metadata-file', metadataFile], ['--iidfile', iidFile]] as const) if (value === '') problems.push(`${flag} needs a file name`);
  const oneImage = ctx.platforms.length === 1 || (output.type === 'image' && output.push) || (output.type === 'docker' && 'load' in output);
  if (iidFile !== undefined && !oneImage) problems.push(`--iidfile holds one image ID, but ${ctx.platforms.length} platforms make ${ctx.platforms.length} images here: use it with --push (the index's digest), --load, or one --platform`);
  return { ...output, ...(metadataFile !== undefined ? { metadataFile } : {}), ...(iidFile !== undefined ? { iidFile } : {}) };
}
