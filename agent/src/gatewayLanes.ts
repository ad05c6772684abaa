import { AGENT_LANE_PATH, Header, LANE_UPGRADE_PROTOCOL, type LaneOpen, type Logger } from '@slipway/proto';
import { toAgentError } from './agentError.js';
import { Backoff } from './backoff.js';
import { dialUpgrade } from './gatewayDialer.js';
import { GatewayLane } from './gatewayLane.js';
import { SlabReader } from './slabReader.js';

export interface GatewayLanesOptions {
  gatewayUrl: URL;
  /** The replica the link reached: a lane landing elsewhere (a load balancer) is refused there. */
  gatewayId: string;
  laneKey: string;
  agentId: string;
  ca: Buffer | undefined;
  connectTimeoutMs: number;
  /** Idle lanes kept ready. */
  idleTarget: number;
  /** Lanes at most, idle or busy (the agent's stream limit). */
  maxLanes: number;
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  log: Logger;
}

export interface LaneStreams {
  // A stream arrived on a lane: serve or refuse it.
  open(lane: GatewayLane, request: LaneOpen): void;
}

// Keeps `idleTarget` lanes open and idle to one gateway replica while its link is up, so each new
// stream finds a connection already through TLS and the upgrade. Dials one lane at a time and
// backs off after a failure; the gateway retires lanes it no longer wants, and a busy lane
// prompts the next dial.
export class GatewayLanes {
  private readonly lanes = new Set<GatewayLane>();
  private readonly backoff: Backoff;
  private readonly stop = new AbortController();
  private dialing = false;
  private retryTimer: NodeJS.Timeout | undefined;
  // The TLS session of the last lane, resumed by the next: a lane then costs no full handshake.
  private tlsSession: Buffer | undefined;

  constructor(
    private readonly options: GatewayLanesOptions,
    private readonly streams: LaneStreams,
  ) {
    this.backoff = new Backoff(options.reconnectBaseMs, options.reconnectMaxMs);
  }

  get idleCount(): number {
    let n = 0;
    for (const lane of this.lanes) if (lane.isIdle) n++;
    return n;
  }

  start(): void {
    this.fill();
  }

  close(): void {
    this.stop.abort();
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    // Busy lanes carry streams of builds that are still running: they finish on their own, and the
    // gateway closes them when the link is gone for good.
    for (const lane of [...this.lanes]) if (lane.isIdle) lane.close();
  }

  private fill(): void {
    if (this.stop.signal.aborted || this.dialing || this.retryTimer !== undefined) return;
    if (this.idleCount >= this.options.idleTarget || this.lanes.size >= this.options.maxLanes) return;
    this.dialing = true;
    const { options } = this;
    const reader = new SlabReader();
    dialUpgrade(
      { gatewayUrl: options.gatewayUrl, ca: options.ca, connectTimeoutMs: options.connectTimeoutMs, signal: this.stop.signal, session: this.tlsSession, reader },
      AGENT_LANE_PATH,
      LANE_UPGRADE_PROTOCOL,
      { [Header.agentId]: options.agentId, [Header.laneKey]: options.laneKey, [Header.gatewayId]: options.gatewayId },
    ).then(
      ({ socket }) => {
        this.dialing = false;
        if (this.stop.signal.aborted) {
          socket.destroy();
          return;
        }
        const session = socket.getSession();
        if (session) this.tlsSession = session;
        this.backoff.reset();
        const lane = new GatewayLane(socket, reader, {
          open: (l, request) => {
            this.streams.open(l, request);
            this.fill();
          },
          idle: () => {},
          closed: (l) => {
            this.lanes.delete(l);
            this.fill();
          },
        });
        this.lanes.add(lane);
        this.fill();
      },
      (err: unknown) => {
        this.dialing = false;
        if (this.stop.signal.aborted) return;
        const delayMs = this.options.reconnectBaseMs + this.backoff.nextDelayMs();
        // A replica behind a load balancer refuses lanes that reach it without its link: expected,
        // and retried; logged at debug to keep it out of the way.
        options.log.debug('lane not opened', { gatewayId: options.gatewayId, reason: toAgentError(err).message, retryInMs: delayMs });
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.fill();
        }, delayMs);
      },
    );
  }
}
