import protoLoader from '@grpc/proto-loader';
import { PROTO_ROOT } from '@slipway/proto';

// Codecs for every BuildKit message the native build sends or receives, from Slipway's own
// .proto files. Each method gives both directions' codecs, so the client calls (Control) and
// the session's server side (FileSync, FileSend, Secrets, Health) share one loader.

export interface MethodCodec<Req, Res> {
  path: string;
  encodeRequest(value: Req): Buffer;
  decodeRequest(bytes: Buffer): Req;
  encodeResponse(value: Res): Buffer;
  decodeResponse(bytes: Buffer): Res;
}

const FILES = [
  'moby/buildkit/v1/control.proto',
  'moby/filesync/v1/filesync.proto',
  'moby/filesync/v1/auth.proto',
  'moby/buildkit/secrets/v1/secrets.proto',
  'moby/grpc/health/v1/health.proto',
  'moby/sshforward/v1/ssh.proto',
];

type Definitions = protoLoader.PackageDefinition;
let loaded: Definitions | undefined;

function definitions(): Definitions {
  // int64 as strings: modification times in nanoseconds do not fit a double.
  loaded ??= protoLoader.loadSync(FILES, { includeDirs: [PROTO_ROOT], keepCase: true, defaults: true, longs: String, enums: Number, arrays: true, objects: false });
  return loaded;
}

export function methodCodec<Req, Res>(service: string, method: string): MethodCodec<Req, Res> {
  const svc = definitions()[service] as Record<string, protoLoader.MethodDefinition<Req, Res>> | undefined;
  const def = svc?.[method];
  if (def === undefined) throw new Error(`no ${service}.${method} in Slipway's BuildKit .proto files`);
  return {
    path: def.path,
    encodeRequest: (value) => def.requestSerialize(value),
    decodeRequest: (bytes) => def.requestDeserialize(bytes),
    encodeResponse: (value) => def.responseSerialize(value),
    decodeResponse: (bytes) => def.responseDeserialize(bytes),
  };
}
