// A gRPC call that ended with a status other than OK, or without any status (the connection
// under it went away), which is told apart because the two mean different things to the user:
// the build failed, or the way to the builder was lost.
export class GrpcStatusError extends Error {
  override readonly name = 'GrpcStatusError';

  constructor(
    /** gRPC status code; undefined when the call ended with no status at all. */
    readonly code: number | undefined,
    readonly details: string,
    readonly path: string,
  ) {
    super(code === undefined ? `${path} ended without a gRPC status: ${details}` : details);
  }

  get connectionLost(): boolean {
    return this.code === undefined;
  }
}

export const GRPC_OK = 0;
export const GRPC_CANCELLED = 1;
export const GRPC_UNKNOWN = 2;
export const GRPC_NOT_FOUND = 5;
export const GRPC_UNIMPLEMENTED = 12;
export const GRPC_UNAVAILABLE = 14;

export function grpcMessageOf(raw: string | string[] | undefined): string {
  const text = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
