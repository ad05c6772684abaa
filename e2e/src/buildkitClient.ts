import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { BUILDKIT_CONTROL_PROTO, BUILDKIT_CONTROL_SERVICE, PROTO_ROOT } from '@slipway/proto';
import { HarnessError } from './harnessError.js';

// A minimal BuildKit client for tests: enough to prove that something speaks BuildKit's control
// API, whatever sits in between (dockerd's /grpc upgrade, the agent, the gateway).

export interface BuildkitWorker {
  id: string;
  labels: Record<string, string>;
  /** `os/arch` or `os/arch/variant`, as BuildKit reports them. */
  platforms: string[];
}

export interface ListWorkersOptions {
  deadlineMs?: number;
  filter?: string[];
}

const DEFAULT_DEADLINE_MS = 10_000;

interface PlatformMessage {
  Architecture: string;
  OS: string;
  Variant: string;
}
interface WorkerRecordMessage {
  ID: string;
  Labels: Record<string, string>;
  platforms: PlatformMessage[];
}
interface ListWorkersResponseMessage {
  record: WorkerRecordMessage[];
}

let listWorkersMethod: Promise<grpc.MethodDefinition<{ filter: string[] }, ListWorkersResponseMessage>> | undefined;

function loadListWorkers(): Promise<grpc.MethodDefinition<{ filter: string[] }, ListWorkersResponseMessage>> {
  listWorkersMethod ??= protoLoader
    .load(BUILDKIT_CONTROL_PROTO, { includeDirs: [PROTO_ROOT], keepCase: true, defaults: true, longs: String })
    .then((definition) => {
      const service = definition[BUILDKIT_CONTROL_SERVICE] as grpc.ServiceDefinition | undefined;
      const method = service?.['ListWorkers'];
      if (method === undefined) throw new HarnessError('INVALID_ARGUMENT', `${BUILDKIT_CONTROL_PROTO} under ${PROTO_ROOT} has no ${BUILDKIT_CONTROL_SERVICE}.ListWorkers`);
      return method as grpc.MethodDefinition<{ filter: string[] }, ListWorkersResponseMessage>;
    });
  return listWorkersMethod;
}

/** Calls `moby.buildkit.v1.Control/ListWorkers` on a gRPC target such as `unix:///path.sock` or `127.0.0.1:1234`. */
export async function listWorkers(target: string, options: ListWorkersOptions = {}): Promise<BuildkitWorker[]> {
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const method = await loadListWorkers();
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  try {
    const response = await new Promise<ListWorkersResponseMessage>((resolve, reject) => {
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        { filter: options.filter ?? [] },
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (err, value) => {
          if (err) reject(err);
          else if (value === undefined) reject(new HarnessError('PROTOCOL', `ListWorkers on ${target} returned no message`));
          else resolve(value);
        },
      );
    });
    return response.record.map((record) => ({
      id: record.ID,
      labels: { ...record.Labels },
      platforms: record.platforms.map((p) => [p.OS, p.Architecture, p.Variant].filter((part) => part !== '').join('/')),
    }));
  } catch (err) {
    if (err instanceof HarnessError) throw err;
    const status = err as Partial<grpc.ServiceError>;
    const codeName = status.code !== undefined ? grpc.status[status.code] : 'unknown';
    const code = status.code === grpc.status.DEADLINE_EXCEEDED ? 'TIMEOUT' : 'PROTOCOL';
    throw new HarnessError(code, `ListWorkers on ${target} failed with gRPC ${codeName}: ${status.details ?? String(err)} (deadline ${deadlineMs} ms)`, { cause: err });
  } finally {
    client.close();
  }
}
