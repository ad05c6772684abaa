import type { Platform } from '@slipway/proto';
import { CliError } from '../cliError.js';
import type { PushedIndex } from './buildMetadata.js';
import { pushImageIndex, type PlatformManifest } from './imageIndex.js';
import type { RegistryCredentials } from './registryCredentials.js';
import type { BuildOutput } from './outputOptions.js';

// The end of a multi-platform push, as buildx does it: every platform's builder pushed its image
// by digest (no tag); the client then writes one image index naming them all, under each tag.

// Without a readable Docker configuration the registry is asked anonymously, as BuildKit then does.
const ANONYMOUS: RegistryCredentials = { configFile: undefined, forHost: () => Promise.resolve(undefined) };

interface PlatformResult {
  platform: Platform;
  exporterResponse: Record<string, string>;
}

/** The pushed manifest as the builder describes it: containerimage.descriptor (base64 JSON), else the digest alone. */
export function manifestOf(result: PlatformResult): PlatformManifest {
  const raw = result.exporterResponse['containerimage.descriptor'];
  if (raw !== undefined) {
    try {
      const d = JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as { mediaType?: unknown; digest?: unknown; size?: unknown };
      if (typeof d.digest === 'string') {
        return { platform: result.platform, digest: d.digest, mediaType: typeof d.mediaType === 'string' ? d.mediaType : '', size: typeof d.size === 'number' ? d.size : 0 };
      }
    } catch {
      // An older BuildKit's answer: the digest alone follows.
    }
  }
  const digest = result.exporterResponse['containerimage.digest'];
  if (digest === undefined) {
    throw new CliError('INTERNAL', `the ${result.platform} builder reported no pushed image (no containerimage.digest in its answer: ${Object.keys(result.exporterResponse).join(', ') || 'empty'})`);
  }
  // The registry's media type and size are used where the builder gave none.
  return { platform: result.platform, digest, mediaType: '', size: 0 };
}

/** Writes the index when several platforms were pushed; undefined otherwise. */
export async function pushIndexIfSeveral(output: BuildOutput, results: PlatformResult[], credentials: RegistryCredentials | undefined): Promise<PushedIndex | undefined> {
  if (output.type !== 'image' || !output.push || results.length < 2) return undefined;
  const creds = credentials ?? ANONYMOUS;
  const manifests = results.map(manifestOf);
  // registry.insecure=true told the builders to push over plain HTTP; the index goes the same way.
  const insecure = output.attrs['registry.insecure'] === 'true';
  const index = await pushImageIndex(output.names, manifests, creds, insecure ? { insecure } : {});
  return { names: output.names, ...index };
}
