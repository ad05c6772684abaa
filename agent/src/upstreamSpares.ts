import type net from 'node:net';
import type { SessionAttachment } from '@slipway/proto';
import type { Upstream } from './upstream.js';

// Upstream connections dialed ahead of the streams that will use them.
//
// Why: a stream cannot carry its first byte to BuildKit before the agent has connected (and, for
// dockerd, before dockerd has answered the /grpc upgrade). Clients such as buildx open many
// short connections in a row, so that dial sits on the critical path of each of them. A spare
// taken from here is already connected; the next spare is dialed shortly after one is taken.
//
// Spares are made only after a stream has used the upstream, and live at most `maxAgeMs`, so an
// idle agent holds nothing open that a server could time out (grpc-go drops connections that
// send no preface within two minutes). What the upstream sends to a waiting spare (an HTTP/2
// server's SETTINGS frame) is kept and handed over with it; a spare the upstream closes, or one
// that errors, is dropped.

/** What a waiting spare may receive before it is used; more means the peer is not what we think. */
const MAX_EARLY_BYTES = 64 * 1024;
/** How long after a stream took a spare the next one is dialed (see refillAfterOpening). */
const REFILL_DELAY_MS = 2;

class Spare {
  private readonly early: Buffer[] = [];
  private earlyBytes = 0;
  private dead = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly socket: net.Socket,
    maxAgeMs: number,
    private readonly onDead: (spare: Spare) => void,
  ) {
    // dial() leaves a placeholder error listener; from here on this class owns the socket.
    socket.removeAllListeners('error');
    socket.on('error', this.kill);
    socket.on('end', this.kill);
    socket.on('close', this.kill);
    socket.on('data', this.onData);
    this.timer = setTimeout(this.kill, maxAgeMs);
    this.timer.unref();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.earlyBytes += chunk.length;
    if (this.earlyBytes > MAX_EARLY_BYTES) {
      this.kill();
      return;
    }
    this.early.push(chunk);
  };

  private readonly kill = (): void => {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.timer);
    this.socket.destroy();
    this.onDead(this);
  };

  /** The socket, as dial() hands one over (paused, one placeholder error listener), or undefined if it died. */
  take(): net.Socket | undefined {
    if (this.dead || this.socket.destroyed) {
      this.kill();
      return undefined;
    }
    clearTimeout(this.timer);
    this.dead = true;
    this.socket.off('data', this.onData);
    this.socket.off('end', this.kill);
    this.socket.off('close', this.kill);
    this.socket.removeAllListeners('error');
    this.socket.on('error', ignoreUntilAdopted);
    this.socket.pause();
    for (let i = this.early.length - 1; i >= 0; i--) this.socket.unshift(this.early[i]!);
    return this.socket;
  }

  destroy(): void {
    this.kill();
  }
}

function ignoreUntilAdopted(): void {
  // Placeholder, as Upstream.dial documents: the caller installs its own listener.
}

export class UpstreamSpares implements Upstream {
  readonly kind: Upstream['kind'];
  readonly address: string;
  readonly endpoint: Upstream['endpoint'];
  readonly connectTimeoutMs: number;
  private readonly spares = new Set<Spare>();
  private filling = 0;
  private closed = false;
  private readonly dialing = new AbortController();
  private hits = 0;
  private misses = 0;
  private refillTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly inner: Upstream,
    private readonly count: number,
    private readonly maxAgeMs: number,
  ) {
    this.kind = inner.kind;
    this.address = inner.address;
    this.endpoint = inner.endpoint;
    this.connectTimeoutMs = inner.connectTimeoutMs;
  }

  /** Dials taken from a spare, and dials made on demand; spares waiting, and being dialed. */
  get stats(): { hits: number; misses: number; waiting: number; dialing: number } {
    return { hits: this.hits, misses: this.misses, waiting: this.spares.size, dialing: this.filling };
  }

  async dial(signal?: AbortSignal): Promise<net.Socket> {
    if (signal?.aborted) throw signal.reason;
    let socket: net.Socket | undefined;
    for (const spare of this.spares) {
      this.spares.delete(spare);
      socket = spare.take();
      if (socket) break;
    }
    if (socket) {
      this.hits++;
      this.refillAfterOpening();
      return socket;
    }
    this.misses++;
    // The stream's own dial goes first; the spare for the next one follows it.
    const dialing = this.inner.dial(signal);
    setImmediate(() => this.refill());
    return dialing;
  }

  // A session attachment names its session in the upgrade itself: no spare can be made ahead for it.
  dialSession(session: SessionAttachment, signal?: AbortSignal): Promise<net.Socket> {
    return this.inner.dialSession(session, signal);
  }

  /** Drops every spare and stops making new ones; idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.refillTimer);
    this.refillTimer = undefined;
    this.dialing.abort(new Error('the agent is closing'));
    for (const spare of this.spares) spare.destroy();
    this.spares.clear();
  }

  // Starting a dial costs this thread a few hundred microseconds of CPU. Right after a stream took
  // its spare, that thread is the stream's critical path: its first bytes go to the upstream,
  // ACCEPT goes back, and the upstream's first answer comes through within a millisecond or so.
  // Dialing then (on a busy machine, the thread is not rescheduled at once) delays exactly that
  // answer, so the next spare is dialed once the opening exchange is over. A stream that comes
  // sooner dials on demand, as without spares.
  private refillAfterOpening(): void {
    if (this.refillTimer !== undefined) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      this.refill();
    }, REFILL_DELAY_MS);
    this.refillTimer.unref();
  }

  private refill(): void {
    while (!this.closed && this.spares.size + this.filling < this.count) {
      this.filling++;
      this.inner.dial(this.dialing.signal).then(
        (socket) => {
          this.filling--;
          if (this.closed) {
            socket.destroy();
            return;
          }
          this.spares.add(new Spare(socket, this.maxAgeMs, (dead) => this.spares.delete(dead)));
        },
        () => {
          // The next stream dials on demand and reports the failure to its client.
          this.filling--;
        },
      );
    }
  }
}
