import type { Readable, Writable } from 'node:stream';

// Moves bytes from a readable side to a writable side with backpressure, and calls onEnd when
// the source ends cleanly. Unlike pipeline(), it never destroys either stream: each end of a
// tunnel must report a failure in its own protocol's terms (trailers, WebSocket close codes)
// before it is torn down, so teardown belongs to the caller. Returns a function that detaches.
export function pump(src: Readable, dst: Writable, onEnd: () => void): () => void {
  const onData = (chunk: Buffer): void => {
    if (!dst.write(chunk)) src.pause();
  };
  const onDrain = (): void => {
    src.resume();
  };
  const onSrcEnd = (): void => {
    detach();
    onEnd();
  };
  const detach = (): void => {
    src.off('data', onData);
    src.off('end', onSrcEnd);
    dst.off('drain', onDrain);
  };
  src.on('data', onData);
  src.on('end', onSrcEnd);
  dst.on('drain', onDrain);
  // A source paused on purpose until its destination existed stays paused despite the listener.
  src.resume();
  return detach;
}
