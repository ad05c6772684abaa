import type { Logger } from '@slipway/proto';
import { toGatewayError } from '../gatewayError.js';
import type { LeaderLease, RoutingTable } from '../routing/routingTable.js';

export interface LeaderElectionOptions {
  table: RoutingTable;
  /** The leadership's name in the table, e.g. `fleet:<fleet name>`. */
  name: string;
  /** Who asks (the gateway id); the same holder renews rather than getting a new token. */
  holderId: string;
  /** How long a lease lasts without renewal; renewals happen every third of it. */
  ttlMs: number;
  log: Logger;
  now?: () => number;
}

// One holder at a time across all replicas, through the routing table's leases. The table hands
// a new holder a larger fencing token, so work started under an old token can be refused
// (FencedFleet) even if the old holder has not noticed it lost the lease.
//
// Renewing every ttl/3 leaves two chances to renew before the lease lapses, so one slow answer
// from the table does not cost the leadership.
export class LeaderElection {
  private readonly now: () => number;
  private lease: LeaderLease | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: LeaderElectionOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Takes part from now on: tries at once, then every ttl/3. Resolves after the first try. */
  start(): Promise<void> {
    if (this.timer === undefined && !this.closed) {
      this.timer = setInterval(() => void this.tick(), Math.max(1, Math.floor(this.options.ttlMs / 3)));
      this.timer.unref();
    }
    return this.tick();
  }

  /** Takes or renews the leadership once. Overlapping calls share one attempt. */
  tick(): Promise<void> {
    this.ticking ??= this.attempt().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  /**
   * The fencing token while this holder's lease (as last granted) has not run out by this
   * holder's clock; undefined otherwise. The table still has the last word (checkFence).
   */
  token(): number | undefined {
    const lease = this.lease;
    if (lease === undefined || lease.expiresAtMs <= this.now()) return undefined;
    return lease.token;
  }

  /** Stops renewing and gives the leadership up, so another replica need not wait out the lease. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.ticking;
    const lease = this.lease;
    this.lease = undefined;
    if (lease === undefined) return;
    try {
      await this.options.table.resignLeadership(this.options.name, lease.token);
      this.options.log.info('fleet leadership resigned', { name: this.options.name, token: lease.token });
    } catch (err) {
      // The lease runs out by itself; resigning only saves the others that wait.
      this.options.log.warn('cannot resign fleet leadership', { name: this.options.name, reason: toGatewayError(err).message });
    }
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    const { table, name, holderId, ttlMs, log } = this.options;
    const before = this.token();
    let lease: LeaderLease | undefined;
    try {
      lease = await table.acquireLeadership(name, holderId, this.now(), ttlMs);
    } catch (err) {
      // Keep what was granted: it stays valid until it runs out, and token() stops at that.
      log.warn('cannot renew fleet leadership', { name, holderId, reason: toGatewayError(err).message });
      return;
    }
    if (this.closed) {
      // close() ran while the table answered; what was just granted must not outlive it.
      if (lease !== undefined) await table.resignLeadership(name, lease.token).catch(() => {});
      return;
    }
    this.lease = lease;
    const after = lease?.token;
    if (after !== before) {
      if (after !== undefined) log.info('fleet leadership taken', { name, holderId, token: after });
      else if (before !== undefined) log.warn('fleet leadership lost', { name, holderId, token: before });
    }
  }
}
