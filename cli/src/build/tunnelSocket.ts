import type { Duplex } from 'node:stream';
import { SocketDuplex } from '@slipway/proto';
import { UnsentBound } from './unsentBound.js';

// The socket the build's HTTP/2 connection to BuildKit runs on: the tunnel stream itself, read
// always (SocketDuplex: bulk data both ways must not deadlock the connection), and written with
// writes taken as done once the tunnel has them queued (UnsentBound: the upload then goes at the
// pace of the slowest layer, not at one round of writes per layer).

export class TunnelSocket extends SocketDuplex {
  private readonly bound = new UnsentBound();

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
    const done = this.bound.queued(bytes);
    const sent = (error?: Error | null): void => {
      // A failed write ends the tunnel, which ends this socket (SocketDuplex listens).
      if (!error) done();
    };
    // Corked: the tunnel (an HTTP/2 stream, a WebSocketByteStream: both have a writev) takes the batch in one go.
    this.tunnel.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.tunnel.write(chunks[i]!.chunk);
    this.tunnel.write(chunks[chunks.length - 1]!.chunk, sent);
    this.tunnel.uncork();
    this.bound.admit(callback);
  }
}
