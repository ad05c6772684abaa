import type { Platform } from '@slipway/proto';
import type { CommandLine } from '../commandLine.js';
import { CliError } from '../cliError.js';
import { fields } from './csvFields.js';
import type { GrpcStatusError } from './grpcStatusError.js';
import type { BuilderCapabilities } from './builderCapabilities.js';

// --cache-from / --cache-to as buildx reads them, for the Solve request's CacheOptions: where
// the builder imports cache from and where it exports the build's cache to. Only what needs no
// service on this machine is accepted: a registry (the builder talks to it, with the session's
// registry credentials) and inline (the cache rides in the image's config). local needs a
// content store served from here, and gha/s3/azblob credentials Slipway does not forward.

export interface CacheEntry {
  type: string;
  attrs: Record<string, string>;
}

export interface CacheOptions {
  imports: CacheEntry[];
  exports: CacheEntry[];
}

const REGISTRY_EXPORT_ATTRS = ['ref', 'mode', 'image-manifest', 'oci-mediatypes', 'compression', 'compression-level', 'force-compression', 'ignore-error'];
const NOT_FORWARDED: Record<string, string> = {
  local: 'it needs a content store served from this machine, which slipway build does not serve',
  gha: 'it needs GitHub Actions cache credentials, which slipway build does not forward',
  s3: 'it needs AWS credentials, which slipway build does not forward',
  azblob: 'it needs Azure credentials, which slipway build does not forward',
};

function entryOf(raw: string, flag: '--cache-from' | '--cache-to', problems: string[]): CacheEntry | undefined {
  // buildx: a value without '=' is a registry reference.
  if (!raw.includes('=')) return raw.trim() === '' ? (problems.push(`${flag} is empty`), undefined) : { type: 'registry', attrs: { ref: raw.trim() } };
  const f = fields(raw);
  const type = f.get('type');
  f.delete('type');
  const attrs = Object.fromEntries(f);
  if (type === undefined || type === '') {
    problems.push(`${flag} needs type=registry${flag === '--cache-to' ? ' or type=inline' : ''}; got '${raw}'`);
    return undefined;
  }
  const before = problems.length;
  if (type === 'registry') {
    if (!attrs['ref']) problems.push(`${flag} type=registry needs ref=REGISTRY/REPOSITORY:TAG; got '${raw}'`);
    const allowed = flag === '--cache-to' ? REGISTRY_EXPORT_ATTRS : ['ref'];
    const unknown = Object.keys(attrs).filter((k) => !allowed.includes(k));
    if (unknown.length > 0) problems.push(`${flag} type=registry: unknown option(s) ${unknown.join(', ')}; expected ${allowed.join(', ')}`);
    if (attrs['mode'] !== undefined && attrs['mode'] !== 'min' && attrs['mode'] !== 'max') problems.push(`${flag} mode must be min or max; got '${attrs['mode']}'`);
  } else if (type === 'inline') {
    if (flag === '--cache-from') problems.push(`--cache-from type=inline is not a cache source; an image with inline cache is imported with type=registry,ref=IMAGE`);
    else if (Object.keys(attrs).length > 0) problems.push(`--cache-to type=inline takes no options; got ${Object.keys(attrs).join(', ')}`);
  } else if (NOT_FORWARDED[type] !== undefined) {
    if (type === 'local') {
      const key = flag === '--cache-to' ? 'dest' : 'src';
      if (!attrs[key]) problems.push(`${flag} type=local needs ${key}=DIR; got '${raw}'`);
    }
    problems.push(`${flag} type=${type} is not supported by slipway build: ${NOT_FORWARDED[type]}; use type=registry${flag === '--cache-to' ? ' or type=inline' : ''}`);
  } else {
    problems.push(`${flag}: unknown cache type '${type}'; expected registry${flag === '--cache-to' ? ' or inline' : ''}`);
  }
  return problems.length === before ? { type, attrs } : undefined;
}

/** The build's cache imports and exports, checked; BUILDKIT_INLINE_CACHE=1 asks for inline cache as in buildx. */
export function cacheOptionsOf(line: CommandLine, buildArgs: Record<string, string>, problems: string[]): CacheOptions {
  const imports = (line.lists.get('--cache-from') ?? []).map((raw) => entryOf(raw, '--cache-from', problems)).filter((e): e is CacheEntry => e !== undefined);
  const exports = (line.lists.get('--cache-to') ?? []).map((raw) => entryOf(raw, '--cache-to', problems)).filter((e): e is CacheEntry => e !== undefined);
  const inlineArg = buildArgs['BUILDKIT_INLINE_CACHE'];
  if (inlineArg !== undefined && ['1', 'true', 't', 'TRUE', 'True'].includes(inlineArg) && !exports.some((e) => e.type === 'inline')) exports.push({ type: 'inline', attrs: {} });
  if (exports.filter((e) => e.type === 'inline').length > 1) problems.push('--cache-to type=inline is given twice');
  return { imports, exports };
}

/** `repo:tag` as `repo:tag-<os>-<arch>` (`latest` when untagged); a digest names one manifest and is kept. */
function platformRef(ref: string, platform: Platform): string {
  if (ref.includes('@')) return ref;
  const suffix = platform.replace('/', '-');
  return ref.lastIndexOf(':') > ref.lastIndexOf('/') ? `${ref}-${suffix}` : `${ref}:latest-${suffix}`;
}

/**
 * One platform's cache options. Each platform is solved on its own builder, so a shared registry
 * ref would have every platform's export overwrite the others' (buildx writes one cache manifest
 * from one solve): with several platforms each gets its own tag, on export and import alike, so a
 * multi-platform build finds its own cache next time.
 */
export function platformCacheOf(cache: CacheOptions, platform: Platform, platforms: readonly Platform[]): CacheOptions {
  if (platforms.length < 2) return cache;
  const own = (e: CacheEntry): CacheEntry => (e.type === 'registry' && e.attrs['ref'] ? { type: e.type, attrs: { ...e.attrs, ref: platformRef(e.attrs['ref'], platform) } } : e);
  return { imports: cache.imports.map(own), exports: cache.exports.map(own) };
}

/** The Solve request's Cache field (BuildKit's CacheOptions) for one platform's solve. */
export function solveCacheOf(
  cache: CacheOptions,
  platform: Platform,
  platforms: readonly Platform[],
): { Exports: { Type: string; Attrs: Record<string, string> }[]; Imports: { Type: string; Attrs: Record<string, string> }[] } {
  const own = platformCacheOf(cache, platform, platforms);
  const wire = (e: CacheEntry) => ({ Type: e.type, Attrs: e.attrs });
  return { Exports: own.exports.map(wire), Imports: own.imports.map(wire) };
}

/**
 * The imports again as the dockerfile frontend's `cache-imports` attribute (JSON of BuildKit's
 * CacheOptionsEntry): the frontend, not the solver, loads imported cache, and it only sees them
 * there (buildx's client sets it the same way).
 */
export function cacheImportsAttr(cache: CacheOptions): string | undefined {
  return cache.imports.length === 0 ? undefined : JSON.stringify(cache.imports.map((e) => ({ Type: e.type, Attrs: e.attrs })));
}

/**
 * A builder without the cache backend asked for refuses the Solve before building anything
 * ("unknown cache exporter"); said here in the user's terms. Docker Engine's BuildKit with the
 * classic image store (20.10, or later without the containerd store) exports inline cache only.
 */
export function cacheRefusalOf(err: GrpcStatusError, platform: Platform): CliError | undefined {
  const m = /unknown cache (exporter|importer): "?([\w-]+)"?/.exec(err.details);
  if (!m) return undefined;
  const flag = m[1] === 'exporter' ? '--cache-to' : '--cache-from';
  return new CliError(
    'CONFIG_INVALID',
    `the ${platform} builder cannot do ${flag} type=${m[2]}: its BuildKit has no "${m[2]}" cache ${m[1]} (${err.details}). ` +
      `Docker Engine's BuildKit with the classic image store exports inline cache only: use --cache-to type=inline there, or a builder with the containerd image store or buildkitd.`,
    { cause: err },
  );
}

/**
 * Refuses, before any solve starts, a cache export the builder cannot make. A builder without
 * the image exporter is Docker Engine's BuildKit on the classic image store, whose only cache
 * exporter is inline (its importers, registry and local, are all there).
 */
export function checkBuilderCache(cache: CacheOptions, capabilities: BuilderCapabilities, platform: Platform): void {
  if (capabilities.exporters.includes('image')) return;
  const refused = cache.exports.find((e) => e.type !== 'inline');
  if (!refused) return;
  throw new CliError(
    'CONFIG_INVALID',
    `the ${platform} builder cannot do --cache-to type=${refused.type}: ${capabilities.description} exports cache inline only. ` +
      'Use --cache-to type=inline there, or a builder with the containerd image store or buildkitd.',
  );
}
