import { randomBytes } from 'node:crypto';
import type { ClientHttp2Session } from 'node:http2';
import { methodCodec } from './buildkitProtos.js';
import { GrpcClientCall } from './grpcClientCall.js';
import { SessionServer } from './sessionServer.js';
import { SessionByteStream, type BytesMessage } from './sessionByteStream.js';

// A BuildKit session: the client opens Control.Session with headers naming the session and the
// methods it serves, then serves gRPC over that stream's BytesMessages. A Solve refers to it by id.

export class ClientSession {
  readonly id = randomBytes(16).toString('hex');
  private call: GrpcClientCall<BytesMessage, BytesMessage> | undefined;

  constructor(
    readonly server: SessionServer,
    private readonly name: string,
    /** BuildKit reuses what an earlier session of the same key uploaded (see contextSharedKey). */
    private readonly sharedKey: string = randomBytes(16).toString('hex'),
  ) {}

  /** Opens the session on BuildKit's connection and starts serving it; `done` settles when it ends. */
  start(connection: ClientHttp2Session): Promise<void> {
    const codec = methodCodec<BytesMessage, BytesMessage>('moby.buildkit.v1.Control', 'Session');
    const call = new GrpcClientCall(connection, codec, {
      'x-docker-expose-session-uuid': this.id,
      'x-docker-expose-session-name': this.name,
      'x-docker-expose-session-sharedkey': this.sharedKey,
      'x-docker-expose-session-grpc-method': this.server.methods,
    });
    this.call = call;
    // BuildKit sends outputs down while the context may still go up: the session's HTTP/2 server
    // must keep reading while its own writes wait (SessionByteStream says why).
    this.server.serve(new SessionByteStream(call, 256 * 1024 * 1024));
    return call.done;
  }

  close(): void {
    this.server.close();
    this.call?.cancel();
  }
}
