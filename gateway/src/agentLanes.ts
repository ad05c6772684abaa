import type { Duplex } from 'node:stream';
import { AgentLane } from './agentLane.js';
import { GatewayError } from './gatewayError.js';

export interface AgentLanesOptions {
  agentId: string;
  /** Lanes an agent may hold open to this replica at once, idle or busy. */
  maxLanes(): number;
  /** Idle lanes kept; one going idle beyond this is closed. */
  maxIdle: number;
  /**
   * An idle lane older than this is closed (the agent dials a fresh one): a connection that
   * carries nothing for long may have been dropped silently by a NAT or proxy on the way, and a
   * stream sent into it would wait on TCP retransmits instead of failing.
   */
  idleMaxMs: number;
}

// The lanes one agent has opened to this replica. Only the gateway picks a lane for a stream
// and only the gateway retires idle ones, so no stream is ever sent down a lane being closed.
export class AgentLanes {
  private readonly all = new Set<AgentLane>();
  // Most recently idle last: streams take the warmest lane, the cold end ages out.
  private readonly idle: AgentLane[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: AgentLanesOptions) {}

  get idleCount(): number {
    return this.idle.length;
  }

  get size(): number {
    return this.all.size;
  }

  // Takes over a lane connection the agent opened; `accept` answers its upgrade, once the lane
  // is known to be wanted.
  add(socket: Duplex, accept: () => void): void {
    if (this.closed) throw new GatewayError('AGENT_LOST', `the link of agent ${this.options.agentId} has closed`);
    const limit = this.options.maxLanes();
    if (this.all.size >= limit) {
      throw new GatewayError('NO_CAPACITY', `agent ${this.options.agentId} already holds ${this.all.size} lanes to this replica (limit ${limit})`);
    }
    accept();
    const lane = new AgentLane(
      socket,
      this.options.agentId,
      (l) => this.park(l),
      (l) => this.forget(l),
    );
    this.all.add(lane);
    this.park(lane);
  }

  /** An idle lane for one stream, or undefined (the stream then goes over the link). */
  take(): AgentLane | undefined {
    for (;;) {
      const lane = this.idle.pop();
      if (lane === undefined) return undefined;
      if (!lane.closed) return lane;
    }
  }

  closeAll(reason: GatewayError): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const lane of [...this.all]) lane.close(reason.message);
  }

  private park(lane: AgentLane): void {
    if (this.closed || this.idle.length >= this.options.maxIdle) {
      lane.close('more idle lanes than this replica keeps');
      return;
    }
    lane.idleSince = Date.now();
    this.idle.push(lane);
    this.sweeper ??= setInterval(() => this.sweep(), Math.max(100, Math.floor(this.options.idleMaxMs / 4)));
  }

  private forget(lane: AgentLane): void {
    this.all.delete(lane);
    const i = this.idle.indexOf(lane);
    if (i >= 0) this.idle.splice(i, 1);
    if (this.all.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private sweep(): void {
    const oldest = Date.now() - this.options.idleMaxMs;
    // Oldest first: the front of the list.
    while (this.idle.length > 0 && this.idle[0]!.idleSince <= oldest) this.idle.shift()!.close('idle too long; the agent dials a fresh one');
  }
}
