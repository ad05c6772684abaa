import path from 'node:path';
import type { Platform } from '@slipway/proto';
import { methodCodec } from './buildkitProtos.js';
import { exporterNameFor, type BuilderCapabilities } from './builderCapabilities.js';
import { dockerEndpointOf, loadIntoDocker } from './dockerLoad.js';
import { parseImageReference } from './imageReference.js';
import { receiveBytes, receiveLocal } from './localOutput.js';
import type { BuildOutput } from './outputOptions.js';
import type { ServerCall, SessionServer } from './sessionServer.js';

// The BuildKit exporter one solve uses for the build's output, and the session service that
// receives what the exporter sends back to the client: fsutil packets for `local`, a plain byte
// stream for `tar`, `docker` and `oci` (written to a file, or for --load streamed into Docker).

export interface Exporter {
  /** BuildKit's exporter name; '' for none (the result stays in the builder's cache). */
  name: string;
  attrs: Record<string, string>;
  /** Where the output went, once the solve is done; undefined when nothing was delivered here. */
  delivered(): string | undefined;
}

export interface ExporterContext {
  platform: Platform;
  /** '' for a single platform, else `<os>_<arch>/`. */
  outputSub: string;
  capabilities: BuilderCapabilities;
}

const bytesCodec = (): ReturnType<typeof methodCodec<{ data: Buffer }, { data: Buffer }>> => methodCodec<{ data: Buffer }, { data: Buffer }>('moby.filesync.v1.FileSend', 'DiffCopy');

async function* bytesOf(call: ServerCall): AsyncIterable<Buffer> {
  const codec = bytesCodec();
  for await (const raw of call.messages()) yield codec.decodeRequest(raw).data;
}

/** A tarball per platform when there are several: `dir/<os>_<arch>-name.tar`, as type=tar's. */
function fileFor(dest: string, outputSub: string): string {
  return outputSub === '' ? dest : path.join(path.dirname(dest), `${outputSub.slice(0, -1)}-${path.basename(dest)}`);
}

/** registry/repository of a name, without its tag or digest. */
function repositoryOf(name: string): string {
  const ref = parseImageReference(name);
  return `${ref.registry}/${ref.repository}`;
}

function nameAttrs(names: string[]): Record<string, string> {
  return names.length > 0 ? { name: names.join(',') } : {};
}

export function exporterFor(output: BuildOutput, ctx: ExporterContext, server: SessionServer): Exporter {
  const name = exporterNameFor(output, ctx.capabilities);
  const several = ctx.outputSub !== '';
  switch (output.type) {
    case 'local': {
      const dest = path.join(output.dest, ctx.outputSub);
      server.handle('/moby.filesync.v1.FileSend/DiffCopy', (call) => receiveLocal(call, dest));
      return { name, attrs: {}, delivered: () => dest };
    }
    case 'tar':
    case 'oci': {
      const dest = fileFor(output.dest, ctx.outputSub);
      const codec = bytesCodec();
      server.handle('/moby.filesync.v1.FileSend/DiffCopy', (call) => receiveBytes(call, dest, (raw) => codec.decodeRequest(raw).data));
      return { name, attrs: output.type === 'oci' ? { ...output.attrs, ...nameAttrs(output.names) } : {}, delivered: () => dest };
    }
    case 'docker': {
      const attrs = { ...output.attrs, ...nameAttrs(output.names) };
      if ('dest' in output) {
        const codec = bytesCodec();
        server.handle('/moby.filesync.v1.FileSend/DiffCopy', (call) => receiveBytes(call, output.dest, (raw) => codec.decodeRequest(raw).data));
        return { name, attrs, delivered: () => output.dest };
      }
      // --load with several platforms: only the one Docker here runs is exported and loaded.
      if (output.load.platform !== ctx.platform) return { name: '', attrs: {}, delivered: () => undefined };
      const endpoint = dockerEndpointOf(output.load.dockerHost);
      if (typeof endpoint === 'string') throw new Error(endpoint);
      let loaded: string[] | undefined;
      server.handle('/moby.filesync.v1.FileSend/DiffCopy', async (call) => {
        loaded = await loadIntoDocker(endpoint, bytesOf(call));
      });
      return { name, attrs, delivered: () => (loaded === undefined ? undefined : `loaded into Docker at ${endpoint.text}${loaded.length > 0 ? ` as ${loaded.join(', ')}` : ''}`) };
    }
    case 'image': {
      const attrs: Record<string, string> = { ...output.attrs, ...nameAttrs(output.names) };
      if (output.push) {
        attrs['push'] = 'true';
        if (several) {
          // buildx: each platform's image is pushed by digest, then one index names them all under
          // the tags. BuildKit refuses a tagged name for that, and naming the image in the builder's
          // store would race with the other platform's when both land on one builder.
          attrs['name'] = [...new Set(output.names.map(repositoryOf))].join(',');
          attrs['push-by-digest'] = 'true';
          attrs['store'] = 'false';
        }
      }
      const what = name === 'moby' ? 'into the builder\'s Docker Engine' : output.push ? (several ? 'pushed by digest' : 'pushed') : 'into the builder\'s image store';
      return { name, attrs, delivered: () => (output.names.length > 0 ? `${output.names.join(', ')} ${what}` : what) };
    }
    case 'none':
      return { name: '', attrs: {}, delivered: () => undefined };
  }
}
