import { randomBytes } from 'node:crypto';
import type { ClientHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { SessionAttachment } from '@slipway/proto';
import { methodCodec } from './buildkitProtos.js';
import { GrpcClientCall } from './grpcClientCall.js';
import { SessionServer } from './sessionServer.js';
import { SessionByteStream, type BytesMessage } from './sessionByteStream.js';

// A BuildKit session: the client names the session and the methods it serves, then serves gRPC
// to BuildKit, which dials it. A Solve refers to it by id. It reaches BuildKit one of two ways:
//  - attached: on a tunnel stream of its own, which the agent joins to dockerd's /session (one
//    HTTP/2 layer, as with `docker build`; proto's sessionAttachment.ts says why it matters);
//  - on Control.Session: the session's HTTP/2 inside the BytesMessages of a call on BuildKit's
//    API connection, which any BuildKit serves.

export class ClientSession {
  readonly id = randomBytes(16).toString('hex');
  private call: GrpcClientCall<BytesMessage, BytesMessage> | undefined;

  constructor(
    readonly server: SessionServer,
    private readonly name: string,
    /** BuildKit reuses what an earlier session of the same key uploaded (see contextSharedKey). */
    private readonly sharedKey: string = randomBytes(16).toString('hex'),
  ) {}

  /** What the agent needs to attach the session to dockerd; complete once every handler is registered. */
  attachment(): SessionAttachment {
    return { id: this.id, name: this.name, sharedKey: this.sharedKey, methods: this.server.methods };
  }

  /** Serves the session on a tunnel stream that was opened with attachment() (dockerd dials it there). */
  attach(connection: Duplex): void {
    this.server.serve(connection);
  }

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
