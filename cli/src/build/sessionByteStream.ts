import { Duplex } from 'node:stream';
import { appendVarint } from './protobufVarint.js';
import type { GrpcClientCall } from './grpcClientCall.js';
import { UnsentBound } from './unsentBound.js';

// The byte stream of a BuildKit session: the session's own HTTP/2 connection, carried in the
// BytesMessages of the Control.Session call. The session's HTTP/2 server reads and writes it.
//
// It keeps reading the call whatever its reader does, as proto's SocketDuplex does for a socket,
// and for the same reason: BuildKit sends outputs down while the context may still go up, and
// Node's HTTP/2 stops reading while one of its writes is pending; were this stream to stop too,
// both directions could wait on each other for good. What it holds unread is bounded by the
// session's HTTP/2 flow control (the windows the server advertised): past `maxBufferedBytes`
// BuildKit is broken and the session is cut. One stream instead of a SocketDuplex over a plain
// Duplex: every chunk of a 200 MB context crossed both.
//
// Writes are passed on without copies: the chunks of a batch (frame headers, payloads) become
// one BytesMessage whose gRPC prefix and field header are written ahead of them, instead of
// being concatenated into a message and that message again into a gRPC frame. A write is taken
// as done once the call has it queued (UnsentBound): the call's own write completes only when the
// bytes have gone down the connection to BuildKit and the tunnel below it.

export interface BytesMessage {
  data: Buffer;
}

/** Well under the 4 MiB a gRPC server accepts in one message by default. */
const MAX_BYTES_MESSAGE = 1024 * 1024;

/** The bytes of a BytesMessage (field 1, bytes) that come before `length` bytes of data. */
function bytesMessageHead(length: number): Buffer {
  const head = [0x0a];
  appendVarint(head, length);
  return Buffer.from(head);
}

export class SessionByteStream extends Duplex {
  private readonly bound = new UnsentBound();

  constructor(
    private readonly call: GrpcClientCall<BytesMessage, BytesMessage>,
    private readonly maxBufferedBytes: number,
  ) {
    super({ allowHalfOpen: false, readableHighWaterMark: 1024 * 1024, writableHighWaterMark: 1024 * 1024 });
    const pumped = (async () => {
      for await (const message of call.messages()) {
        if (message.data.length === 0) continue;
        this.push(message.data);
        if (this.readableLength > this.maxBufferedBytes) {
          throw new Error(`BuildKit sent ${this.readableLength} session bytes beyond what HTTP/2 flow control allows (limit ${this.maxBufferedBytes})`);
        }
      }
      this.push(null);
    })();
    pumped.catch((err: Error) => this.destroy(err));
  }

  override _read(): void {
    // Nothing to do: the call is always read (see above).
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this._writev([{ chunk }], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    let batch: Buffer[] = [];
    let batchBytes = 0;
    const flush = (): void => {
      if (batch.length === 0) return;
      batch.unshift(bytesMessageHead(batchBytes));
      this.send(batch, batchBytes);
      batch = [];
      batchBytes = 0;
    };
    for (const { chunk } of chunks) {
      if (batchBytes + chunk.length > MAX_BYTES_MESSAGE && batchBytes > 0) flush();
      batch.push(chunk);
      batchBytes += chunk.length;
    }
    flush();
    this.bound.admit(callback);
  }

  private send(parts: Buffer[], bytes: number): void {
    const sent = this.bound.queued(bytes);
    this.call.writeParts(parts).then(
      sent,
      // The call is over (the session ended or broke): nothing more can go.
      (err: Error) => this.destroy(err),
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.call.end();
    callback();
  }
}
