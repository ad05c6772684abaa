// One BuildKit call, `moby.buildkit.v1.Control/ListWorkers`, spoken by hand over HTTP/2 without
// TLS (as buildx speaks to a remote builder), on whatever byte stream leads to BuildKit: a tunnel
// stream or one of the daemon's local sockets. It is what `slipway doctor` asks each builder: the
// smallest question only a real BuildKit answers.
//
// A gRPC client library would be a dependency of every CLI install for one unary call with an
// empty request; the answer's few fields are read with a small protobuf reader instead.
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { GrpcFrameDecoder, encodeGrpcFrame } from '@slipway/proto';

export interface BuildkitWorker {
  id: string;
  /** `os/arch[/variant]`. */
  platforms: string[];
  /** BuildKit's version, when the builder says. */
  buildkitVersion: string | undefined;
}

const LIST_WORKERS_PATH = '/moby.buildkit.v1.Control/ListWorkers';
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

export class BuildkitProbeError extends Error {
  override readonly name = 'BuildkitProbeError';
}

/** Calls ListWorkers over the stream `connect` opens (h2c with prior knowledge); the stream is destroyed afterwards. */
export function listWorkersOver(connect: () => Duplex, timeoutMs: number): Promise<BuildkitWorker[]> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const session = http2.connect('http://buildkit', { createConnection: () => connect() });
    const finish = (err: Error | undefined, workers?: BuildkitWorker[]): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      if (err) reject(err);
      else resolve(workers ?? []);
    };
    const timer = setTimeout(() => finish(new BuildkitProbeError(`no answer to ListWorkers within ${timeoutMs} ms`)), timeoutMs);
    session.on('error', (err) => finish(new BuildkitProbeError(`the connection to BuildKit failed: ${err.message}`)));
    session.on('close', () => finish(new BuildkitProbeError('the connection to BuildKit closed before it answered ListWorkers')));
    const request = session.request({
      ':method': 'POST',
      ':path': LIST_WORKERS_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    request.on('error', (err) => finish(new BuildkitProbeError(`ListWorkers failed: ${err.message}`)));
    const decoder = new GrpcFrameDecoder(MAX_ANSWER_BYTES);
    const messages: Buffer[] = [];
    let status = 0;
    let contentType = '';
    request.on('response', (headers) => {
      status = Number(headers[':status']);
      contentType = String(headers['content-type'] ?? '');
      // A trailers-only answer carries grpc-status in the headers.
      if (headers['grpc-status'] !== undefined) settleGrpc(String(headers['grpc-status']), headers['grpc-message']);
    });
    request.on('data', (chunk: Buffer) => {
      try {
        messages.push(...decoder.push(chunk));
      } catch (err) {
        finish(new BuildkitProbeError(`ListWorkers answered with a malformed gRPC message: ${(err as Error).message}`));
      }
    });
    request.on('trailers', (trailers) => settleGrpc(String(trailers['grpc-status'] ?? ''), trailers['grpc-message']));
    request.on('end', () => {
      if (status !== 200) finish(new BuildkitProbeError(`ListWorkers got HTTP ${status}${contentType ? ` (${contentType})` : ''}, not a gRPC answer`));
      else settleGrpc('', undefined);
    });
    function settleGrpc(code: string, message: unknown): void {
      if (code === '') {
        finish(new BuildkitProbeError('ListWorkers ended without a gRPC status'));
        return;
      }
      if (code !== '0') {
        finish(new BuildkitProbeError(`ListWorkers failed with gRPC status ${code}${message ? `: ${decodeURIComponent(String(message))}` : ''}`));
        return;
      }
      try {
        finish(undefined, messages.flatMap((m) => decodeListWorkersResponse(m)));
      } catch (err) {
        finish(new BuildkitProbeError(`ListWorkers answered with something that is not a ListWorkersResponse: ${(err as Error).message}`));
      }
    }
    // An empty ListWorkersRequest: no filter, every worker.
    request.end(encodeGrpcFrame(Buffer.alloc(0)));
  });
}

// moby.buildkit.v1.ListWorkersResponse { repeated WorkerRecord record = 1; }
function decodeListWorkersResponse(message: Buffer): BuildkitWorker[] {
  const workers: BuildkitWorker[] = [];
  for (const field of fields(message)) {
    if (field.number === 1 && field.bytes) workers.push(decodeWorkerRecord(field.bytes));
  }
  return workers;
}

// WorkerRecord { string ID = 1; map<string,string> Labels = 2; repeated pb.Platform platforms = 3; BuildkitVersion BuildkitVersion = 5; }
function decodeWorkerRecord(message: Buffer): BuildkitWorker {
  const worker: BuildkitWorker = { id: '', platforms: [], buildkitVersion: undefined };
  for (const field of fields(message)) {
    if (!field.bytes) continue;
    if (field.number === 1) worker.id = field.bytes.toString('utf8');
    else if (field.number === 3) worker.platforms.push(decodePlatform(field.bytes));
    else if (field.number === 5) {
      // BuildkitVersion { string package = 1; string version = 2; string revision = 3; }
      const version = fields(field.bytes).find((f) => f.number === 2)?.bytes?.toString('utf8');
      if (version) worker.buildkitVersion = version;
    }
  }
  return worker;
}

// pb.Platform { string Architecture = 1; string OS = 2; string Variant = 3; ... }
function decodePlatform(message: Buffer): string {
  const parts: Record<number, string> = {};
  for (const field of fields(message)) if (field.bytes && field.number <= 3) parts[field.number] = field.bytes.toString('utf8');
  return [parts[2] ?? '', parts[1] ?? '', parts[3] ?? ''].filter((p) => p !== '').join('/');
}

interface Field {
  number: number;
  /** Length-delimited payload; undefined for varints and fixed-width values. */
  bytes: Buffer | undefined;
}

function fields(message: Buffer): Field[] {
  const out: Field[] = [];
  let at = 0;
  const varint = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (at >= message.length) throw new Error('truncated varint');
      const byte = message[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
      shift += 7;
      if (shift > 63) throw new Error('varint longer than 10 bytes');
    }
  };
  while (at < message.length) {
    const key = varint();
    const number = Math.floor(key / 8);
    switch (key & 7) {
      case 0:
        varint();
        out.push({ number, bytes: undefined });
        break;
      case 1:
        at += 8;
        out.push({ number, bytes: undefined });
        break;
      case 2: {
        const length = varint();
        if (at + length > message.length) throw new Error('truncated field');
        out.push({ number, bytes: message.subarray(at, at + length) });
        at += length;
        break;
      }
      case 5:
        at += 4;
        out.push({ number, bytes: undefined });
        break;
      default:
        throw new Error(`unsupported wire type ${key & 7}`);
    }
  }
  if (at > message.length) throw new Error('truncated field');
  return out;
}
