import { MemoryRoutingTable, type AcquireResult, type RoutingTable } from '@slipway/gateway';
import type { Platform } from '@slipway/proto';
import { BenchError } from './benchError.js';
import { projectName, type BuildTrace } from './buildTrace.js';
import { EventQueue } from './eventQueue.js';
import { PlacementTally, type PlacerSummary } from './placementTally.js';

// Slipway's placement on a virtual clock: the real MemoryRoutingTable, called only through the
// RoutingTable interface, as the gateway and the fleet would call it.
// - The builders register once and the simulation renews their leases every 20 virtual
//   seconds, as the replicas holding their links would.
// - A build acquires when it arrives. A pending build asks again whenever the answer could have
//   changed: a slot of its project's builders freed, a pool builder appeared, or it has waited
//   `spillAfterMs` (when the table lets it spill). The product's CLI polls every 0.5-2 s instead,
//   so these waits are what the table imposes, without the client's polling delay on top.
// - A build ends (endAllocation 'finished') after its duration.
// - The fleet's idle reclamation: every `reclaimIntervalMs` it lists the builders and releases
//   the binding (the cache) of every bound builder idle for `idleRetentionMs`, which returns it
//   to the pool. Without this nothing ever frees a binding and the pool runs dry. The product's
//   reconciler (gateway/src/fleet/fleetReconciler.ts) stops an idle builder and terminates it,
//   releasing the binding, a retention period later; a fleet at its instance limit frees a cache
//   no sooner than that either. Here an idle builder stays live until released, so a project
//   coming back finds it at once (the product would have to start the stopped VM).
// Heartbeats are not simulated: allocations get a lease longer than the whole run.

export interface SlipwaySimulationOptions {
  /** The placer's name in the results. */
  name: string;
  builders: number;
  capacity: number;
  platform: Platform;
  spillAfterMs: number;
  idleRetentionMs: number;
  reclaimIntervalMs: number;
  /**
   * Also, when projects wait for the pool and it is empty, release the bindings of the builders
   * idle longest (one per waiting project), however short their idle time: what a fleet that
   * cannot grow has to do. Off, builders are only reclaimed after `idleRetentionMs`.
   */
  evictOnDemand: boolean;
  /** After the last arrival, builds still waiting get this much more virtual time before they are reported unplaced. */
  drainLimitMs: number;
}

export interface SlipwaySimulationResult {
  summary: PlacerSummary;
  /** Bindings the idle reclamation released during the measurement window. */
  bindingsReleased: number;
  /** Table calls made, for the record. */
  tableCalls: number;
}

const GATEWAY_ID = 'sim-gateway';
const FLEET = 'sim';
const LEASE_MS = 60_000;
const RENEW_INTERVAL_MS = 20_000;
const REAP_INTERVAL_MS = 600_000;
// Longer than any run: the simulation does not send allocation heartbeats.
const ALLOCATION_LEASE_MS = 7 * 24 * 3_600_000;

type Event =
  | { kind: 'arrive'; build: number }
  | { kind: 'end'; build: number }
  | { kind: 'spill'; build: number }
  | { kind: 'renew' }
  | { kind: 'reclaim' }
  | { kind: 'reap' };

export async function simulateSlipway(trace: BuildTrace, opts: SlipwaySimulationOptions): Promise<SlipwaySimulationResult> {
  return new SlipwaySimulation(trace, opts, new MemoryRoutingTable()).run();
}

class SlipwaySimulation {
  private readonly events = new EventQueue<Event>();
  private readonly tally: PlacementTally;
  private readonly agentIds: string[];
  private readonly epochs = new Map<string, number>();
  /** Builds not yet placed, per project, oldest first. */
  private readonly pendingByProject = new Map<number, number[]>();
  /** Builds that may take a pool builder (no builder of their own, or waited spillAfterMs), oldest first. */
  private readonly poolQueue: number[] = [];
  private poolHead = 0;
  private readonly inPoolQueue: Uint8Array;
  private readonly spillScheduled: Uint8Array;
  private readonly placed: Uint8Array;
  /** Builders bound to a project; the pool is the rest (every builder stays live). */
  private bound = 0;
  private unplacedMeasured = 0;
  /** Builds that arrived and are not placed yet. */
  private waiting = 0;
  private arrivalsLeft: number;
  private bindingsReleased = 0;
  private tableCalls = 0;

  constructor(
    private readonly trace: BuildTrace,
    private readonly opts: SlipwaySimulationOptions,
    private readonly table: RoutingTable,
  ) {
    this.tally = new PlacementTally(trace, opts.name, true);
    this.agentIds = Array.from({ length: opts.builders }, (_, i) => `builder-${String(i).padStart(3, '0')}`);
    this.inPoolQueue = new Uint8Array(trace.count);
    this.spillScheduled = new Uint8Array(trace.count);
    this.placed = new Uint8Array(trace.count);
    this.arrivalsLeft = trace.count;
    for (let i = 0; i < trace.count; i++) if (trace.measured[i]) this.unplacedMeasured++;
  }

  async run(): Promise<SlipwaySimulationResult> {
    // Trace time zero: arrivals come at or after it, and the fleet's timers tick from it.
    const t0 = this.trace.warmupEndMs - this.trace.params.warmupMs;
    for (const agentId of this.agentIds) {
      const lease = await this.call(() =>
        this.table.registerBuilder({ agentId, platform: this.opts.platform, fleet: FLEET, capacity: this.opts.capacity, gatewayId: GATEWAY_ID, nowMs: t0, leaseMs: LEASE_MS }),
      );
      this.epochs.set(agentId, lease.epoch);
    }
    for (let i = 0; i < this.trace.count; i++) this.events.push(this.trace.arrivalMs[i]!, { kind: 'arrive', build: i });
    this.events.push(t0 + RENEW_INTERVAL_MS, { kind: 'renew' });
    this.events.push(t0 + this.opts.reclaimIntervalMs, { kind: 'reclaim' });
    this.events.push(t0 + REAP_INTERVAL_MS, { kind: 'reap' });

    const stopAtMs = this.trace.endMs + this.opts.drainLimitMs;
    for (let handled = 1; ; handled++) {
      // Every await above resolves at once, as microtasks: without a turn of the event loop now
      // and then, a Ctrl-C would not be seen until the whole simulation is done.
      if (handled % 20_000 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const next = this.events.pop();
      if (next === undefined || next.timeMs > stopAtMs) break;
      if (this.arrivalsLeft === 0 && this.unplacedMeasured === 0) break;
      await this.handle(next.timeMs, next.item);
      this.tally.noteWaiting(next.timeMs, this.waiting);
    }
    await this.checkBindings(this.events.peekTime() ?? stopAtMs);
    return { summary: this.tally.summary(), bindingsReleased: this.bindingsReleased, tableCalls: this.tableCalls };
  }

  private async handle(now: number, e: Event): Promise<void> {
    switch (e.kind) {
      case 'arrive': {
        this.arrivalsLeft--;
        this.waiting++;
        const p = this.trace.project[e.build]!;
        let list = this.pendingByProject.get(p);
        if (list === undefined) this.pendingByProject.set(p, (list = []));
        list.push(e.build);
        // Its first acquire creates the allocation, whose age decides when it may spill. Builds of
        // the project already waiting cannot be overtaken: any slot they could use they already have.
        const r = await this.acquire(e.build, now);
        if (r.state === 'pending') this.park(e.build, now, r.reason);
        return;
      }
      case 'end': {
        const b = e.build;
        await this.call(() => this.table.endAllocation(buildId(b), this.opts.platform, 'finished', 'done', now));
        await this.pollProject(this.trace.project[b]!, now);
        return;
      }
      case 'spill':
        if (!this.placed[e.build]) {
          const r = await this.acquire(e.build, now);
          if (r.state === 'pending') this.park(e.build, now, r.reason);
        }
        return;
      case 'renew':
        for (const agentId of this.agentIds) {
          const ok = await this.call(() =>
            this.table.renewBuilder({ agentId, platform: this.opts.platform, gatewayId: GATEWAY_ID, epoch: this.epochs.get(agentId)!, nowMs: now, leaseMs: LEASE_MS, draining: false }),
          );
          if (!ok) throw new BenchError('MEASUREMENT_FAILED', `simulation: the lease of ${agentId} could not be renewed at ${now}`);
        }
        this.events.push(now + RENEW_INTERVAL_MS, { kind: 'renew' });
        return;
      case 'reclaim': {
        const builders = await this.call(() => this.table.listBuilders(this.opts.platform));
        const idle = builders.filter((b) => b.project !== undefined && b.active === 0).sort((x, y) => x.lastUsedAtMs - y.lastUsedAtMs);
        let released = 0;
        for (const b of idle) {
          if (now - b.lastUsedAtMs < this.opts.idleRetentionMs) break;
          await this.call(() => this.table.releaseBinding(b.agentId, this.opts.platform));
          released++;
        }
        if (this.opts.evictOnDemand) {
          const demands = await this.call(() => this.table.listDemands(this.opts.platform));
          const short = demands.length - (this.opts.builders - (this.bound - released));
          for (const b of idle.slice(released, released + Math.max(0, short))) {
            await this.call(() => this.table.releaseBinding(b.agentId, this.opts.platform));
            released++;
          }
        }
        this.bound -= released;
        if (now >= this.trace.warmupEndMs && now < this.trace.endMs) this.bindingsReleased += released;
        if (released > 0) await this.pollPool(now);
        this.events.push(now + this.opts.reclaimIntervalMs, { kind: 'reclaim' });
        return;
      }
      case 'reap': {
        const r = await this.call(() => this.table.reap(this.opts.platform, now));
        if (r.expiredBuilders.length + r.failedAllocations.length + r.expiredAllocations.length > 0) {
          throw new BenchError('MEASUREMENT_FAILED', `simulation: reap at ${now} expired something it should not have: ${JSON.stringify(r)}`);
        }
        this.events.push(now + REAP_INTERVAL_MS, { kind: 'reap' });
        return;
      }
    }
  }

  /** Asks for the project's waiting builds, oldest first, until one has to keep waiting. */
  private async pollProject(project: number, now: number): Promise<void> {
    const list = this.pendingByProject.get(project);
    while (list !== undefined && list.length > 0) {
      const b = list[0]!;
      const r = await this.acquire(b, now);
      if (r.state === 'pending') {
        this.park(b, now, r.reason);
        return;
      }
    }
  }

  /** A pool builder appeared: the builds that may take one ask, oldest first, while any is left. */
  private async pollPool(now: number): Promise<void> {
    while (this.bound < this.opts.builders && this.poolHead < this.poolQueue.length) {
      const b = this.poolQueue[this.poolHead++]!;
      this.inPoolQueue[b] = 0;
      if (this.placed[b]) continue;
      const r = await this.acquire(b, now);
      // Its project got a builder meanwhile and it has not waited spillAfterMs: it waits for that one.
      if (r.state === 'pending') this.park(b, now, r.reason);
    }
    if (this.poolHead > 4096 && this.poolHead * 2 > this.poolQueue.length) {
      this.poolQueue.splice(0, this.poolHead);
      this.poolHead = 0;
    }
  }

  /** Files a build that has to wait under what can unblock it. */
  private park(b: number, now: number, reason: string): void {
    const spillAtMs = this.trace.arrivalMs[b]! + this.opts.spillAfterMs;
    if (reason !== 'busy' || now >= spillAtMs) {
      if (!this.inPoolQueue[b]) {
        this.inPoolQueue[b] = 1;
        this.poolQueue.push(b);
      }
    } else if (!this.spillScheduled[b]) {
      this.spillScheduled[b] = 1;
      this.events.push(spillAtMs, { kind: 'spill', build: b });
    }
  }

  private async acquire(b: number, now: number): Promise<AcquireResult> {
    const project = this.trace.project[b]!;
    const r = await this.call(() =>
      this.table.acquire({
        buildId: buildId(b),
        project: projectName(project),
        platform: this.opts.platform,
        nowMs: now,
        spillAfterMs: this.opts.spillAfterMs,
        allocationLeaseMs: ALLOCATION_LEASE_MS,
      }),
    );
    if (r.state === 'active') {
      if (!r.placedNow) throw new BenchError('MEASUREMENT_FAILED', `simulation: build ${b} was already placed`);
      this.placed[b] = 1;
      this.waiting--;
      const list = this.pendingByProject.get(project)!;
      list.splice(list.indexOf(b), 1);
      if (list.length === 0) this.pendingByProject.delete(project);
      if (!r.warm) this.bound++;
      if (this.trace.measured[b]) this.unplacedMeasured--;
      this.tally.place(b, r.waitedMs, r.warm, r.spilled);
      this.events.push(now + this.trace.durationMs[b]!, { kind: 'end', build: b });
      // A new builder for the project has capacity - 1 more free slots for its other waiting builds.
      if (!r.warm && this.pendingByProject.has(project)) await this.pollProject(project, now);
    } else if (r.state !== 'pending') {
      throw new BenchError('MEASUREMENT_FAILED', `simulation: build ${b} ended (${r.state}: ${r.reason}) before it ran`);
    }
    return r;
  }

  /** The simulation's count of bound builders must be the table's. */
  private async checkBindings(now: number): Promise<void> {
    const builders = await this.call(() => this.table.listBuilders(this.opts.platform));
    const bound = builders.filter((b) => b.project !== undefined).length;
    if (bound !== this.bound) throw new BenchError('MEASUREMENT_FAILED', `simulation: counted ${this.bound} bound builders at ${now}, the table has ${bound}`);
  }

  private call<T>(fn: () => Promise<T>): Promise<T> {
    this.tableCalls++;
    return fn();
  }
}

function buildId(b: number): string {
  return `build-${b}`;
}
