import { Duplex } from 'node:stream';

// Hands a socket to Node's HTTP/2 through a plain Duplex that keeps reading the socket while the
// session has paused its input.
//
// Why: a Node HTTP/2 session stops reading its socket whenever one of its own writes is still
// in progress. With bulk data flowing both ways on one connection (a build context going up
// while output comes down) both peers' socket buffers fill, each waits for its write, neither
// reads, and the connection deadlocks for good. Reading on regardless breaks the cycle. What is
// buffered here is bounded by HTTP/2 flow control: a peer may not send more DATA than the windows
// we advertised, so past `maxBufferedBytes` the peer is broken or hostile and the link is cut.
// One such end per connection is enough: its peer's writes always complete, so the peer always
// gets back to reading.
export class SocketDuplex extends Duplex {
  constructor(
    private readonly socket: Duplex,
    private readonly maxBufferedBytes: number,
  ) {
    super({ allowHalfOpen: false, readableHighWaterMark: 1024 * 1024, writableHighWaterMark: 1024 * 1024 });
    socket.on('data', (chunk: Buffer) => {
      this.push(chunk);
      if (this.readableLength > this.maxBufferedBytes) {
        this.destroy(new Error(`peer sent ${this.readableLength} bytes beyond what HTTP/2 flow control allows (limit ${this.maxBufferedBytes})`));
      }
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err: Error) => this.destroy(err));
    socket.on('close', () => this.destroy());
    // The socket may have been paused by whoever read the HTTP/1.1 head before us.
    socket.resume();
  }

  override _read(): void {
    // Nothing to do: the socket is never paused (see above).
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]!.chunk);
    this.socket.write(chunks[chunks.length - 1]!.chunk, callback);
    this.socket.uncork();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }
}

// What a session may legitimately have in flight toward us: its whole receive window plus
// framing and control frames.
export function sessionReadAllowance(sessionWindowBytes: number): number {
  return sessionWindowBytes * 2 + 4 * 1024 * 1024;
}
