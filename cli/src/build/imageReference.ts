import { CliError } from '../cliError.js';

// An image name as the Docker CLI reads it: [REGISTRY/]REPOSITORY[:TAG][@DIGEST], where the first
// path component is a registry when it has a '.' or a ':' or is 'localhost'; otherwise the image
// is on Docker Hub, whose one-component names live under library/.

export const DOCKER_HUB_REGISTRY = 'docker.io';
/** Where Docker Hub's API answers; its credentials are kept under another name (registryCredentials.ts). */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

export interface ImageReference {
  /** host[:port]; docker.io for Docker Hub. */
  registry: string;
  /** The repository's path on the registry, e.g. library/alpine or team/app. */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const REGISTRY = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]+)?$/;

export function parseImageReference(name: string): ImageReference {
  const bad = (why: string): CliError => new CliError('CONFIG_INVALID', `invalid image name '${name}': ${why}`);
  let rest = name;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`expected a digest like sha256:<64 hex> after '@', got '${digest}'`);
  }
  let registry = DOCKER_HUB_REGISTRY;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    rest = rest.slice(slash + 1);
    if (!REGISTRY.test(registry)) throw bad(`'${registry}' is not a registry host[:port]`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`'${tag}' is not a tag (letters, digits, _ . -; at most 128)`);
  }
  if (rest === '') throw bad('no repository');
  for (const component of rest.split('/')) {
    if (!COMPONENT.test(component)) throw bad(`'${component}' is not a repository path component (lower-case letters, digits, separators . _ __ -)`);
  }
  if (registry === DOCKER_HUB_REGISTRY && !rest.includes('/')) rest = `library/${rest}`;
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository: rest, tag, digest };
}

/** The host the registry's API answers on (Docker Hub's differs from its name). */
export function apiHostOf(registry: string): string {
  return registry === DOCKER_HUB_REGISTRY ? DOCKER_HUB_API_HOST : registry;
}

export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}
