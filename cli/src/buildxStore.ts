// buildx's own store files, written directly so that configure-docker gives the same result
// whether or not buildx is installed (and needs no buildx to run). The formats are buildx's:
// its `store` package saves a NodeGroup with Go's encoding/json as `instances/<name>`, and the
// selection as `current`. Go's encoder is compact, keeps struct field order, writes nil maps and
// slices as null, and escapes <, > and & (and U+2028/U+2029) in strings; the bytes here are what
// `docker buildx create` and `docker buildx use --global` would have written for the same builder.
import type { Env, Platform } from '@slipway/proto';
import { dockerHostOf } from './dockerLocations.js';

export interface BuildxNode {
  name: string;
  /** unix:///path.sock */
  endpoint: string;
  platform: Platform;
  driverOpts: Record<string, string> | undefined;
}

/** `instances/<name>`: a NodeGroup with the remote driver. */
export function buildxInstanceJson(name: string, nodes: readonly BuildxNode[]): string {
  const nodeJson = nodes.map((n) => {
    const [os, architecture] = n.platform.split('/') as [string, string];
    // Fields in the order of buildx's store.Node and the OCI image-spec Platform.
    return (
      `{"Name":${goString(n.name)},"Endpoint":${goString(n.endpoint)},` +
      `"Platforms":[{"architecture":${goString(architecture)},"os":${goString(os)}}],` +
      `"DriverOpts":${n.driverOpts === undefined ? 'null' : goMap(n.driverOpts)},"Flags":null,"Files":null}`
    );
  });
  return `{"Name":${goString(name)},"Driver":"remote","Nodes":[${nodeJson.join(',')}],"Dynamic":false}`;
}

/**
 * `current` selecting the builder globally (`docker buildx use --global`). Key is the Docker
 * endpoint buildx would record (see dockerEndpointKey); with Global it is not used for lookup.
 */
export function buildxCurrentJson(key: string, name: string): string {
  return `{"Key":${goString(key)},"Name":${goString(name)},"Global":true}`;
}

/**
 * What buildx's dockerutil.GetCurrentEndpoint records: the current context's name, or for the
 * default context its Docker host.
 */
export function dockerEndpointKey(env: Env, currentContext: string | undefined): string {
  const context = env['DOCKER_CONTEXT'] || currentContext || 'default';
  if (context !== 'default') return context;
  return dockerHostOf(env);
}

/** What a `current` file selects, if anything: { name, global }. */
export function parseBuildxCurrent(text: string): { name: string; global: boolean } | undefined {
  try {
    const value = JSON.parse(text) as { Name?: unknown; Global?: unknown };
    return typeof value.Name === 'string' && value.Name !== '' ? { name: value.Name, global: value.Global === true } : undefined;
  } catch {
    return undefined;
  }
}

function goString(value: string): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// Go sorts map keys.
function goMap(map: Record<string, string>): string {
  const keys = Object.keys(map).sort();
  return `{${keys.map((k) => `${goString(k)}:${goString(map[k]!)}`).join(',')}}`;
}
