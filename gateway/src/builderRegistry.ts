import { Platforms, type Logger } from '@slipway/proto';
import { toGatewayError } from './gatewayError.js';
import type { AgentLink } from './agentLink.js';
import type { RoutingTable } from './routing/routingTable.js';

export interface BuilderRegistryOptions {
  table: RoutingTable;
  gatewayId: string;
  /** How long a builder stays placeable after this replica last vouched for it. */
  leaseMs: number;
  /** How often this replica renews the leases of the links it holds, and reaps expired ones. */
  renewIntervalMs: number;
  log: Logger;
  now?: () => number;
}

interface Held {
  link: AgentLink;
  epoch: number | undefined;
}

// Keeps the routing table's view of builders in step with the agent links this replica holds:
// registers each link, renews its lease while the link lives, unlinks it when it closes. Every
// replica also reaps: expiry is idempotent, so whichever replica gets there first does it.
export class BuilderRegistry {
  private readonly held = new Map<string, Held>();
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => number;
  private ticking = false;
  private closed = false;

  constructor(private readonly options: BuilderRegistryOptions) {
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => void this.tick(), options.renewIntervalMs);
    this.timer.unref();
  }

  /** Registers a link that has described itself; resolves once the table knows it. */
  async add(link: AgentLink): Promise<void> {
    const entry: Held = { link, epoch: undefined };
    this.held.set(link.agentId, entry);
    // An agent that starts draining must leave placement now, not at the next renewal.
    link.once('draining', () => void this.renew(entry));
    link.once('closed', () => {
      if (this.held.get(link.agentId) === entry) this.held.delete(link.agentId);
      if (entry.epoch !== undefined && !this.closed) {
        this.options.table.unlinkBuilder(link.agentId, link.platform, this.options.gatewayId, entry.epoch).catch((err: unknown) => {
          this.options.log.warn('cannot unlink builder from the routing table', { agentId: link.agentId, reason: toGatewayError(err).message });
        });
      }
    });
    await this.register(entry);
  }

  private async register(entry: Held): Promise<void> {
    const { link } = entry;
    const lease = await this.options.table.registerBuilder({
      agentId: link.agentId,
      platform: link.platform,
      fleet: link.fleet,
      capacity: link.maxBuilds,
      instanceId: link.instanceId,
      gatewayId: this.options.gatewayId,
      nowMs: this.now(),
      leaseMs: this.options.leaseMs,
    });
    entry.epoch = lease.epoch;
    // The link may have closed while the table was answering: its 'closed' handler saw no epoch.
    if (link.closed && !this.closed) {
      await this.options.table.unlinkBuilder(link.agentId, link.platform, this.options.gatewayId, lease.epoch);
      return;
    }
    this.options.log.info('builder registered', { agentId: link.agentId, platform: link.platform, epoch: lease.epoch, project: lease.project ?? '(pool)' });
  }

  private async renew(entry: Held, nowMs = this.now()): Promise<void> {
    const { link } = entry;
    if (link.closed || this.closed) return;
    try {
      const fresh =
        entry.epoch !== undefined &&
        (await this.options.table.renewBuilder({
          agentId: link.agentId,
          platform: link.platform,
          gatewayId: this.options.gatewayId,
          epoch: entry.epoch,
          nowMs,
          leaseMs: this.options.leaseMs,
          draining: link.draining,
        }));
      // Stale: the lease lapsed (this replica could not reach the table for a while) and the
      // builder's allocations were failed. It comes back as a new incarnation.
      if (!fresh) await this.register(entry);
    } catch (err) {
      this.options.log.warn('cannot renew builder lease', { agentId: link.agentId, reason: toGatewayError(err).message });
    }
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.closed) return;
    this.ticking = true;
    try {
      const nowMs = this.now();
      await Promise.all([...this.held.values()].map((entry) => this.renew(entry, nowMs)));
      for (const platform of Platforms) {
        try {
          const reaped = await this.options.table.reap(platform, nowMs);
          if (reaped.expiredBuilders.length > 0 || reaped.failedAllocations.length > 0) {
            this.options.log.warn('builders expired', { platform, builders: reaped.expiredBuilders.join(','), failedBuilds: reaped.failedAllocations.length });
          }
        } catch (err) {
          this.options.log.warn('cannot reap the routing table', { platform, reason: toGatewayError(err).message });
        }
      }
    } finally {
      this.ticking = false;
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  /**
   * A replica shutting down takes its links out of the table at once, so that no new build is
   * placed, and no stream forwarded, through links about to go; the builders stay placeable
   * through their other replicas' links. Streams already running carry on.
   */
  async unlinkAll(): Promise<void> {
    await Promise.all(
      [...this.held.values()].map(async ({ link, epoch }) => {
        if (epoch === undefined) return;
        try {
          await this.options.table.unlinkBuilder(link.agentId, link.platform, this.options.gatewayId, epoch);
        } catch (err) {
          this.options.log.warn('cannot unlink builder while shutting down', { agentId: link.agentId, reason: toGatewayError(err).message });
        }
      }),
    );
  }
}
