import { Duplex } from 'node:stream';

// Two connected in-memory byte streams: what one writes, the other reads. Node 20 has no
// stream.duplexPair(). Backpressure: a write completes only once the peer's reader has room.
class PairedEnd extends Duplex {
  peer!: PairedEnd;
  private pendingWrite: (() => void) | undefined;

  constructor() {
    super({ allowHalfOpen: true });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.peer.push(chunk)) callback();
    else this.peer.pendingWrite = () => callback();
  }

  override _read(): void {
    const pending = this.pendingWrite;
    this.pendingWrite = undefined;
    pending?.();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.destroy();
    callback(error);
  }
}

export function duplexPair(): [Duplex, Duplex] {
  const a = new PairedEnd();
  const b = new PairedEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
