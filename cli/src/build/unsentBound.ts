// A write to a build connection's byte stream is taken as done once the layer below has it
// queued, not once that layer has sent it, as long as what is queued and not yet sent stays under
// a bound; past it, the write completes when enough has gone out.
//
// Why: Node's HTTP/2 has one write at a time on a stream like these, and a write below completes
// only after its own trip (a TLS write, a turn of the event loop, a tunnel hop). Waiting for each
// before handing over the next batch left the connection idle for much of every batch. A
// Writable has at most one write in progress, so one waiting callback is all there can be.

/** Bytes queued below and not yet sent on before the stream's writes wait. */
export const MAX_UNSENT_BYTES = 4 * 1024 * 1024;

export class UnsentBound {
  private unsent = 0;
  /** The callback of the write that found too much unsent, called once enough went out. */
  private blocked: (() => void) | undefined;

  /** Counts `bytes` as queued below; returns what to call once they have been sent. */
  queued(bytes: number): () => void {
    this.unsent += bytes;
    return () => {
      this.unsent -= bytes;
      if (this.unsent >= MAX_UNSENT_BYTES || this.blocked === undefined) return;
      const resume = this.blocked;
      this.blocked = undefined;
      resume();
    };
  }

  /** Completes a write now, or once what is unsent has fallen under the bound. */
  admit(callback: () => void): void {
    if (this.unsent < MAX_UNSENT_BYTES) callback();
    else this.blocked = callback;
  }
}
