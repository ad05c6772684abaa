import { randomBytes } from 'node:crypto';
import type { ClientHttp2Session } from 'node:http2';
import { Duplex } from 'node:stream';
import { SocketDuplex } from '@slipway/proto';
import { methodCodec } from './buildkitProtos.js';
import { GrpcClientCall } from './grpcClientCall.js';
import { SessionServer } from './sessionServer.js';

// A BuildKit session: the client opens Control.Session with headers naming the session and the
// methods it serves, then serves gRPC over that stream's BytesMessages. A Solve refers to it by id.

interface BytesMessage {
  data: Buffer;
}

export class ClientSession {
  readonly id = randomBytes(16).toString('hex');
  private call: GrpcClientCall<BytesMessage, BytesMessage> | undefined;

  constructor(
    readonly server: SessionServer,
    private readonly name: string,
  ) {}

  /** Opens the session on BuildKit's connection and starts serving it; `done` settles when it ends. */
  start(connection: ClientHttp2Session): Promise<void> {
    const codec = methodCodec<BytesMessage, BytesMessage>('moby.buildkit.v1.Control', 'Session');
    const call = new GrpcClientCall(connection, codec, {
      'x-docker-expose-session-uuid': this.id,
      'x-docker-expose-session-name': this.name,
      'x-docker-expose-session-sharedkey': this.id,
      'x-docker-expose-session-grpc-method': this.server.methods,
    });
    this.call = call;
    let wantMore: (() => void) | undefined;
    const bytes = new Duplex({
      read() {
        const resume = wantMore;
        wantMore = undefined;
        resume?.();
      },
      write(chunk: Buffer, _encoding, callback) {
        call.write({ data: chunk }).then(() => callback(), callback);
      },
      final(callback) {
        call.end();
        callback();
      },
    });
    const pumped = (async () => {
      for await (const message of call.messages()) {
        if (message.data.length > 0 && !bytes.push(message.data)) await new Promise<void>((resolve) => (wantMore = resolve));
      }
      bytes.push(null);
    })();
    pumped.catch((err: Error) => bytes.destroy(err));
    // BuildKit sends outputs down while the context may still go up: the session's HTTP/2 server
    // must keep reading while its own writes wait (SocketDuplex says why).
    this.server.serve(new SocketDuplex(bytes, 256 * 1024 * 1024));
    return call.done;
  }

  close(): void {
    this.server.close();
    this.call?.cancel();
  }
}
