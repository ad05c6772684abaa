import { writeFile } from 'node:fs/promises';
import type { Platform } from '@slipway/proto';

// --metadata-file and --iidfile, as buildx writes them. BuildKit's exporter response holds some
// values as base64 JSON (containerimage.descriptor); buildx embeds those as JSON and keeps the
// others as strings, and so does this. With several platforms each platform's response goes
// under its platform's key, and the index pushed for them (if any) is the top level's image.

export interface PlatformResponse {
  platform: Platform;
  exporterResponse: Record<string, string>;
}

export interface PushedIndex {
  names: string[];
  digest: string;
  mediaType: string;
  size: number;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodedValue(value: string): unknown {
  if (value === '' || !BASE64.test(value)) return value;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(value, 'base64').toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? parsed : value;
  } catch {
    return value;
  }
}

function decoded(response: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(response).sort()) out[key] = decodedValue(response[key]!);
  return out;
}

export function metadataOf(responses: PlatformResponse[], index: PushedIndex | undefined): Record<string, unknown> {
  if (responses.length === 1 && index === undefined) return decoded(responses[0]!.exporterResponse);
  const out: Record<string, unknown> = {};
  if (index) {
    out['containerimage.descriptor'] = { mediaType: index.mediaType, digest: index.digest, size: index.size };
    out['containerimage.digest'] = index.digest;
    out['image.name'] = index.names.join(',');
  }
  for (const r of responses) out[r.platform] = decoded(r.exporterResponse);
  return out;
}

/** The image ID buildx writes: the config digest of one image, else the (index) digest. */
export function imageIdOf(responses: PlatformResponse[], index: PushedIndex | undefined, loaded: Platform | undefined): string {
  if (index) return index.digest;
  const one = responses.length === 1 ? responses[0] : responses.find((r) => r.platform === loaded);
  return one?.exporterResponse['containerimage.config.digest'] ?? one?.exporterResponse['containerimage.digest'] ?? '';
}

export async function writeBuildRecords(files: { metadataFile?: string | undefined; iidFile?: string | undefined }, responses: PlatformResponse[], index: PushedIndex | undefined, loaded: Platform | undefined): Promise<void> {
  if (files.metadataFile !== undefined) await writeFile(files.metadataFile, `${JSON.stringify(metadataOf(responses, index), null, 2)}\n`);
  if (files.iidFile !== undefined) await writeFile(files.iidFile, imageIdOf(responses, index, loaded));
}
