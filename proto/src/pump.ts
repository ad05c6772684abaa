import type { Readable, Writable } from 'node:stream';

// How much may wait in a destination's writable buffer before the source is paused. Node's
// default high-water marks (16 KiB for sockets and HTTP/2 streams) turn every large chunk into a
// pause/resume cycle: one chunk in flight per hop and an epoll_ctl pair per read. A larger
// allowance keeps each hop busy while still bounding memory per stream.
export const PUMP_BUFFER_BYTES = 1024 * 1024;

// Moves bytes from a readable side to a writable side with backpressure, and calls onEnd when
// the source ends cleanly. Unlike pipeline(), it never destroys either stream: each end of a
// tunnel must report a failure in its own protocol's terms (trailers, WebSocket close codes)
// before it is torn down, so teardown belongs to the caller.
export interface Pump {
  // Bytes moved so far.
  readonly bytes: number;
  // Detaches from both streams; idempotent.
  stop(): void;
}

// frameHeader, when given, is written ahead of every chunk (a lane's DATA frame header).
export function pump(src: Readable, dst: Writable, onEnd: () => void, bufferBytes = PUMP_BUFFER_BYTES, frameHeader?: (bytes: number) => Buffer): Pump {
  const limit = Math.max(bufferBytes, dst.writableHighWaterMark);
  let paused = false;
  const batch = new TurnCork(dst);
  let bytes = 0;
  const onData = (chunk: Buffer): void => {
    bytes += chunk.length;
    batch.hold();
    if (frameHeader !== undefined) dst.write(frameHeader(chunk.length));
    dst.write(chunk);
    // Past the high-water mark write() has returned false, so 'drain' is due once it empties.
    if (dst.writableLength >= limit) {
      paused = true;
      src.pause();
    }
  };
  const onDrain = (): void => {
    if (!paused) return;
    paused = false;
    src.resume();
  };
  const onSrcEnd = (): void => {
    stop();
    onEnd();
  };
  const stop = (): void => {
    src.off('data', onData);
    src.off('end', onSrcEnd);
    dst.off('drain', onDrain);
  };
  src.on('data', onData);
  src.on('end', onSrcEnd);
  dst.on('drain', onDrain);
  // A source paused on purpose until its destination existed stays paused despite the listener.
  src.resume();
  return {
    get bytes() {
      return bytes;
    },
    stop,
  };
}

// HTTP/2 DATA frames (16 KiB) straddle TLS records (16 KiB), so a receiving hop sees many small
// chunks. Written one by one, each is a syscall (to a socket) or a call into the HTTP/2 session
// (to a stream); corked until the event loop has handled the reads at hand, they leave as one
// writev. Measured on a relaying hop (HTTP/2 in, HTTP/2 out): about 9% less CPU per byte.
export class TurnCork {
  private corked = false;
  private readonly release = (): void => {
    this.corked = false;
    this.dst.uncork();
  };

  constructor(private readonly dst: Writable) {}

  // Call before each write: the first one of a turn corks, the turn's end uncorks.
  hold(): void {
    if (this.corked) return;
    this.corked = true;
    this.dst.cork();
    setImmediate(this.release);
  }
}
