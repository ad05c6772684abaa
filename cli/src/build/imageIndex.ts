import type { Platform } from '@slipway/proto';
import { CliError } from '../cliError.js';
import { formatReference, parseImageReference, type ImageReference } from './imageReference.js';
import { DOCKER_MANIFEST_LIST, OCI_INDEX, RegistryClient, type Descriptor } from './registryClient.js';
import type { RegistryCredentials } from './registryCredentials.js';

// A multi-platform push as buildx does it: each platform's builder pushes its image by digest,
// then the client writes one OCI image index naming them all, under every tag asked for.

export interface PlatformManifest {
  platform: Platform;
  digest: string;
  /** '' when unknown: taken from the registry. */
  mediaType: string;
  /** 0 when unknown: taken from the registry. */
  size: number;
}

interface IndexEntry extends Descriptor {
  platform?: { architecture: string; os: string; variant?: string };
  annotations?: Record<string, string>;
}

interface Repository {
  registry: string;
  repository: string;
  tags: string[];
  names: string[];
}

/**
 * Builds the index, checks that every platform's manifest is in each target repository (the
 * registry's own media type and size win where the builder gave none), PUTs it under each tag
 * and returns its descriptor (the metadata file's containerimage.descriptor).
 */
export async function pushImageIndex(
  names: string[],
  manifests: PlatformManifest[],
  credentials: RegistryCredentials,
  /** insecure: plain HTTP to every registry named (the image exporter's registry.insecure=true); loopback ones always are. */
  options: { insecure?: boolean } = {},
): Promise<{ digest: string; mediaType: string; size: number }> {
  if (names.length === 0) throw new CliError('CONFIG_INVALID', 'pushing an image index needs at least one name to push to');
  if (manifests.length === 0) throw new CliError('CONFIG_INVALID', `pushing an image index to ${names.join(', ')} needs at least one platform's manifest`);
  const repositories = groupByRepository(names.map((n) => parseImageReference(n)));
  const clients = new Map<string, RegistryClient>();
  const clientFor = (registry: string): RegistryClient => {
    let client = clients.get(registry);
    if (client === undefined) {
      client = new RegistryClient(registry, credentials, options.insecure ? { insecure: true } : {});
      clients.set(registry, client);
    }
    return client;
  };
  try {
    let body: Buffer | undefined;
    for (const repo of repositories) {
      const entries = await entriesIn(clientFor(repo.registry), repo, manifests, repositories.length > 1);
      const bytes = indexBytes(entries);
      // Each repository's entries come from its own registry; they must describe the same index.
      if (body !== undefined && !body.equals(bytes)) {
        throw new CliError('REGISTRY_FAILED', `the platforms' manifests differ between ${repositories[0]!.names[0]} and ${repo.names[0]} (media type or size): the index would not be the same in both`);
      }
      body = bytes;
    }
    let stored: Descriptor | undefined;
    for (const repo of repositories) {
      const client = clientFor(repo.registry);
      for (const tag of repo.tags) stored = await client.putManifest(repo.repository, tag, OCI_INDEX, body!);
    }
    return { digest: stored!.digest, mediaType: stored!.mediaType, size: stored!.size };
  } finally {
    for (const client of clients.values()) client.close();
  }
}

function groupByRepository(refs: ImageReference[]): Repository[] {
  const byKey = new Map<string, Repository>();
  for (const ref of refs) {
    if (ref.tag === undefined) {
      throw new CliError('CONFIG_INVALID', `cannot push an image index to ${formatReference(ref)}: the name needs a tag (a digest names one existing manifest)`);
    }
    const key = `${ref.registry}/${ref.repository}`;
    let repo = byKey.get(key);
    if (repo === undefined) {
      repo = { registry: ref.registry, repository: ref.repository, tags: [], names: [] };
      byKey.set(key, repo);
    }
    if (!repo.tags.includes(ref.tag)) repo.tags.push(ref.tag);
    repo.names.push(formatReference(ref));
  }
  return [...byKey.values()];
}

async function entriesIn(client: RegistryClient, repo: Repository, manifests: PlatformManifest[], severalRepositories: boolean): Promise<IndexEntry[]> {
  const entries: IndexEntry[] = [];
  for (const m of manifests) {
    const found = await client.headManifest(repo.repository, m.digest);
    if (found === undefined) {
      throw new CliError(
        'REGISTRY_FAILED',
        `the ${m.platform} image ${m.digest} is not in ${repo.registry}/${repo.repository}, so an index there cannot name it` +
          (severalRepositories
            ? ': with names in several repositories, each repository must hold every platform\'s image (the builders push to each name)'
            : ': the builder for that platform did not push it there'),
      );
    }
    if (found.digest !== m.digest) throw new CliError('REGISTRY_FAILED', `${repo.registry}/${repo.repository} answered for ${m.digest} with the digest ${found.digest}`);
    if (m.size > 0 && m.size !== found.size) {
      throw new CliError('REGISTRY_FAILED', `the ${m.platform} image ${m.digest} is ${found.size} bytes in ${repo.registry}/${repo.repository}, but its builder said ${m.size}`);
    }
    const mediaType = m.mediaType !== '' ? m.mediaType : found.mediaType;
    if (mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST) {
      // The builder pushed an index of its own (its image plus attestations): its entries join ours, as buildx merges them.
      const { body } = await client.getManifest(repo.repository, m.digest);
      entries.push(...nestedEntries(body, `${repo.registry}/${repo.repository}@${m.digest}`));
      continue;
    }
    entries.push({ mediaType, digest: m.digest, size: found.size, platform: platformOf(m.platform) });
  }
  return entries;
}

function nestedEntries(body: Buffer, where: string): IndexEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new CliError('REGISTRY_FAILED', `${where} says it is an index but is not JSON`);
  }
  const list = (parsed as { manifests?: unknown }).manifests;
  if (!Array.isArray(list)) throw new CliError('REGISTRY_FAILED', `${where} says it is an index but has no manifests list`);
  return list.map((raw, i) => {
    const e = raw as Partial<IndexEntry>;
    if (typeof e.mediaType !== 'string' || typeof e.digest !== 'string' || typeof e.size !== 'number') {
      throw new CliError('REGISTRY_FAILED', `${where}: manifests[${i}] lacks a mediaType, digest or size`);
    }
    return { mediaType: e.mediaType, digest: e.digest, size: e.size, ...(e.platform ? { platform: e.platform } : {}), ...(e.annotations ? { annotations: e.annotations } : {}) };
  });
}

/** OCI's platform object; arm64 carries no variant, as BuildKit and buildx write it (v8 is arm64's only one). */
export function platformOf(platform: Platform): { architecture: string; os: string } {
  const [os, architecture] = platform.split('/') as [string, string];
  return { architecture, os };
}

function indexBytes(entries: IndexEntry[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries }));
}
