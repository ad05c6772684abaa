import type { Duplex } from 'node:stream';
import { SocketDuplex } from '@slipway/proto';

// The socket the build's HTTP/2 connection to BuildKit runs on: the tunnel stream itself, read
// always (SocketDuplex: bulk data both ways must not deadlock the connection), and written with
// writes taken as done once the tunnel has them queued, as long as what is queued stays under
// MAX_UNSENT_BYTES.
//
// Why: Node's HTTP/2 has one write at a time on a socket like this one, and a write to the
// tunnel completes only once the gateway connection below has sent it (its own TLS write and a
// turn of the event loop). Waiting for that before handing over the next batch had the
// connection to BuildKit idle for much of every batch: the upload went at the pace of one
// round of writes per layer, not at the pace of the slowest layer.

/** Bytes written to the tunnel and not yet sent on before the connection's writes wait. */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024;

export class TunnelSocket extends SocketDuplex {
  private unsent = 0;
  /** The callback of the write that found too much unsent, called once enough went out. */
  private blocked: (() => void) | undefined;

  constructor(
    private readonly tunnel: Duplex,
    maxBufferedBytes: number,
  ) {
    super(tunnel, maxBufferedBytes);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this._writev([{ chunk }], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    let bytes = 0;
    for (const { chunk } of chunks) bytes += chunk.length;
    this.unsent += bytes;
    const sent = (error?: Error | null): void => {
      // A failed write ends the tunnel, which ends this socket (SocketDuplex listens).
      if (error) return;
      this.unsent -= bytes;
      if (this.unsent >= MAX_UNSENT_BYTES || this.blocked === undefined) return;
      const resume = this.blocked;
      this.blocked = undefined;
      resume();
    };
    // Corked: the tunnel (an HTTP/2 stream, a WebSocketByteStream: both have a writev) takes the batch in one go.
    this.tunnel.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.tunnel.write(chunks[i]!.chunk);
    this.tunnel.write(chunks[chunks.length - 1]!.chunk, sent);
    this.tunnel.uncork();
    if (this.unsent < MAX_UNSENT_BYTES) callback();
    else this.blocked = () => callback();
  }
}
