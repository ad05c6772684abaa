import { randomBytes } from 'node:crypto';
import type { ClientHttp2Session } from 'node:http2';
import { Duplex } from 'node:stream';
import { SocketDuplex } from '@slipway/proto';
import { methodCodec } from './buildkitProtos.js';
import { appendVarint } from './protobufVarint.js';
import { GrpcClientCall } from './grpcClientCall.js';
import { SessionServer } from './sessionServer.js';

// A BuildKit session: the client opens Control.Session with headers naming the session and the
// methods it serves, then serves gRPC over that stream's BytesMessages. A Solve refers to it by id.

interface BytesMessage {
  data: Buffer;
}

/** Well under the 4 MiB a gRPC server accepts in one message by default. */
const MAX_BYTES_MESSAGE = 1024 * 1024;

/** A BytesMessage (field 1, bytes) holding `chunks` one after the other, encoded as protobuf does. */
function bytesMessage(chunks: Buffer[], length: number): Buffer {
  const head = [0x0a];
  appendVarint(head, length);
  return Buffer.concat([Buffer.from(head), ...chunks], head.length + length);
}

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
      // The session's HTTP/2 writes frame headers and payloads as separate chunks: one
      // BytesMessage per batch rather than per chunk saves most of the per-message work.
      writev(chunks: Array<{ chunk: Buffer }>, callback) {
        const messages: Buffer[] = [];
        let batch: Buffer[] = [];
        let batchBytes = 0;
        const flush = (): void => {
          if (batch.length > 0) messages.push(bytesMessage(batch, batchBytes));
          batch = [];
          batchBytes = 0;
        };
        for (const { chunk } of chunks) {
          if (batchBytes + chunk.length > MAX_BYTES_MESSAGE && batchBytes > 0) flush();
          batch.push(chunk);
          batchBytes += chunk.length;
        }
        flush();
        Promise.all(messages.map((m) => call.writeRaw(m))).then(() => callback(), callback);
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
