import path from 'node:path';
import { methodCodec } from './buildkitProtos.js';
import { receiveBytes, receiveLocal } from './localOutput.js';
import type { BuildOutput } from './outputOptions.js';
import type { SessionServer } from './sessionServer.js';

// The BuildKit exporter one solve uses for the build's output, and the session service that
// receives what the exporter sends back to the client.

export interface Exporter {
  /** BuildKit's exporter name; '' for none (the result stays in the builder's cache). */
  name: string;
  attrs: Record<string, string>;
}

/** `outputSub` is '' for a single platform, else `<os>_<arch>/`. */
export function exporterFor(output: BuildOutput, outputSub: string, server: SessionServer): Exporter {
  if (output.type === 'local') {
    const dest = path.join(output.dest, outputSub);
    server.handle('/moby.filesync.v1.FileSend/DiffCopy', (call) => receiveLocal(call, dest));
    return { name: 'local', attrs: {} };
  }
  if (output.type === 'tar') {
    const bytesCodec = methodCodec<{ data: Buffer }, { data: Buffer }>('moby.filesync.v1.FileSend', 'DiffCopy');
    const dest = outputSub === '' ? output.dest : path.join(path.dirname(output.dest), `${outputSub.slice(0, -1)}-${path.basename(output.dest)}`);
    server.handle('/moby.filesync.v1.FileSend/DiffCopy', (call) => receiveBytes(call, dest, (raw) => bytesCodec.decodeRequest(raw).data));
    return { name: 'tar', attrs: {} };
  }
  return { name: '', attrs: {} };
}
