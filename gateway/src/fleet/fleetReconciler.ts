import { createHash } from 'node:crypto';
import { Platforms, type Logger, type Platform } from '@slipway/proto';
import { toGatewayError, type GatewayError } from '../gatewayError.js';
import { isEphemeralProject } from '../ephemeralProject.js';
import type { GatewayMetrics } from '../metrics.js';
import type { BuilderRecord, Demand, RoutingTable } from '../routing/routingTable.js';
import { isDryRunInstanceId } from './ec2FleetProvider.js';
import { FencedFleet } from './fencedFleet.js';
import type { FleetInstance, FleetInstanceState, FleetProvider } from './fleetProvider.js';

export interface FleetReconcilerOptions {
  fleet: FleetProvider;
  table: RoutingTable;
  /** Says whether this replica leads, and under which fencing token. */
  election: { token(): number | undefined };
  /** The leadership the election holds; fleet calls are fenced against it. */
  leadershipName: string;
  /** Platforms the fleet can launch (one launch template each): demands and the warm pool are served for these only. */
  platforms: readonly Platform[];
  /** A project's builder with nothing to do for this long is stopped (its disk, and cache, stay). */
  idleStopMs: number;
  /** A project's stopped builder is terminated (its cache dropped) this long after it stopped. */
  retentionMs: number;
  /** Stopped instances bound to no project kept per platform, ready to be claimed by a new project. */
  warmPoolSize: number;
  reconcileIntervalMs: number;
  /** Instances (not terminated) per platform never exceed this. */
  maxInstancesPerPlatform: number;
  metrics: Pick<GatewayMetrics, 'builderStarts' | 'fleetActions'>;
  log: Logger;
  now?: () => number;
  /** See FencedFleetOptions.marginMs. */
  fenceMarginMs?: number;
  /** The provider only pretends (EC2 DryRun): leave the routing table alone too, or it would bind and drain builders for VMs that never come. */
  dryRun?: boolean;
}

export type FleetActionName = 'list' | 'launch' | 'start' | 'stop' | 'terminate' | 'setProject' | 'bind' | 'drain' | 'release';

export interface FleetActionReport {
  action: FleetActionName;
  platform: Platform | undefined;
  instanceId: string | undefined;
  project: string | undefined;
  outcome: 'ok' | 'failed' | 'refused';
  reason?: string;
}

export interface ReconcileReport {
  /** False: not the leader (or a local fleet); nothing was looked at. */
  leader: boolean;
  token: number | undefined;
  actions: FleetActionReport[];
  /** Demands left waiting this pass, and why. */
  waiting: Array<{ platform: Platform; project: string; reason: string }>;
  /** Set when the pass stopped early: leadership lost (STALE_LEADER), the table or the listing unavailable. */
  abortedBy: GatewayError | undefined;
}

interface Pass {
  fleet: FencedFleet;
  nowMs: number;
  report: ReconcileReport;
  /** Every instance of the fleet as listed at the start, updated as this pass changes them. */
  instances: Map<string, FleetInstance>;
  /** Instances this pass already acted on: one action per instance per pass. */
  touched: Set<string>;
  /** `platform\0project` -> bound agent ids, read once per pass. */
  bound: Map<string, string[]>;
}

interface Launched {
  platform: Platform;
  project: string | undefined;
  atMs: number;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: GatewayError };

// Thrown inside a pass to end it at once; carries the error that did.
class PassAborted extends Error {
  constructor(readonly error: GatewayError) {
    super(error.message);
  }
}

const ALIVE: readonly FleetInstanceState[] = ['pending', 'running', 'stopping', 'stopped'];
const BOOTING: readonly FleetInstanceState[] = ['pending', 'running'];

// The fleet reconciler: run by the one replica that holds the fleet leadership, it compares what
// the routing table asks for (demands, idle builders) with what the fleet has (instances and their
// states) and closes the gap, one pass every reconcileIntervalMs:
//
//   bindings   an instance's slipway:project tag and its table binding agree (the table wins
//              when it bound a pool builder to a project; the tag wins when a crash fell between
//              tagging and binding)
//   demands    per waiting project: a stopped instance holding its cache is started (warm); else a
//              stopped pool instance is claimed and started (cold); else one is launched (cold)
//   idle       a builder with no work for idleStopMs is drained in the table, then stopped
//   retention  a project's instance stopped for retentionMs is terminated and its binding freed
//   warm pool  warmPoolSize stopped, unbound instances per platform
//
// Every pass reads the world afresh, so a new leader needs nothing from the old one: a launch
// whose binding was lost is re-bound from its tag, and a launch retried for the same demand
// reuses the ClientToken (derived from project, platform and when the demand began), so EC2
// returns the instance it already made. Fleet calls go through a FencedFleet: once another
// replica has taken over, the first call refused (STALE_LEADER) ends the pass. Other failures
// (throttling beyond the provider's retries, a refused call) are counted and logged, and the
// pass goes on with the next item; the next pass tries again.
export class FleetReconciler {
  private readonly now: () => number;
  /** Launches this leader made that the listing may not show yet (EC2's reads lag its writes). */
  private readonly launched = new Map<string, Launched>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: FleetReconcilerOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Reconciles every reconcileIntervalMs until close(). */
  start(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setInterval(() => void this.tick(), this.options.reconcileIntervalMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for a pass in progress. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private tick(): Promise<void> {
    // A pass slower than the interval (throttling backoff) is not stacked with another.
    this.running ??= this.reconcileOnce()
      .then(
        () => undefined,
        (err: unknown) => this.options.log.error('fleet reconcile pass failed', { reason: toGatewayError(err).message }),
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** One pass. Does nothing unless this replica leads an ec2-like fleet. */
  async reconcileOnce(): Promise<ReconcileReport> {
    const report: ReconcileReport = { leader: false, token: undefined, actions: [], waiting: [], abortedBy: undefined };
    // A local fleet can do nothing about demands or idle builders: its agents are run by hand.
    if (this.closed || this.options.fleet.kind === 'local') return report;
    const token = this.options.election.token();
    if (token === undefined) return report;
    report.leader = true;
    report.token = token;
    const nowMs = this.now();
    const fleet = new FencedFleet(this.options.fleet, this.options.table, {
      name: this.options.leadershipName,
      token,
      now: this.now,
      marginMs: this.options.fenceMarginMs ?? 0,
    });
    const pass: Pass = { fleet, nowMs, report, instances: new Map(), touched: new Set(), bound: new Map() };
    try {
      const listed = await this.act(pass, 'list', {}, () => fleet.list());
      if (!listed.ok) {
        // Without the listing nothing can be compared; the next pass lists again.
        report.abortedBy = listed.error;
        return report;
      }
      for (const inst of listed.value) pass.instances.set(inst.instanceId, { ...inst });
      this.forgetListedLaunches(pass);
      for (const platform of Platforms) await this.reconcilePlatform(pass, platform);
    } catch (err) {
      const cause = err instanceof PassAborted ? err.error : toGatewayError(err);
      report.abortedBy = cause;
      const level = cause.code === 'STALE_LEADER' ? 'warn' : 'error';
      this.options.log[level]('fleet reconcile pass ended early', { code: cause.code, reason: cause.message, token });
    }
    return report;
  }

  // ---- one platform ------------------------------------------------------------------------

  private async reconcilePlatform(pass: Pass, platform: Platform): Promise<void> {
    const { table } = this.options;
    const records = await this.read(() => table.listBuilders(platform));
    // By convention an EC2 builder's agent id is its instance id; the record says so explicitly.
    const byInstance = new Map(records.map((b) => [b.instanceId ?? b.agentId, b]));
    const byAgent = new Map(records.map((b) => [b.agentId, b]));
    const mine = (): FleetInstance[] =>
      [...pass.instances.values()].filter((i) => i.platform === platform && ALIVE.includes(i.state));

    await this.syncBindings(pass, platform, mine(), byInstance);

    const serves = this.options.platforms.includes(platform);
    const demands = serves ? await this.read(() => table.listDemands(platform)) : [];
    for (const demand of demands) await this.serveDemand(pass, platform, demand, mine, byAgent, byInstance);
    await this.stopIdle(pass, platform, mine(), byInstance);
    await this.expire(pass, platform, mine(), new Set(demands.map((d) => d.project)));
    if (serves) await this.keepWarmPool(pass, platform, mine);
  }

  // The tag is what survives in EC2 (and what a new leader reads); the binding is what placement
  // obeys. They drift when the table binds a live pool builder to a project (acquire does that)
  // or when a leader died between tagging and binding.
  private async syncBindings(pass: Pass, platform: Platform, instances: FleetInstance[], byInstance: Map<string, BuilderRecord>): Promise<void> {
    for (const inst of instances) {
      const record = byInstance.get(inst.instanceId);
      if (record?.project !== undefined) {
        if (inst.project === record.project) continue;
        const tagged = await this.act(pass, 'setProject', { platform, instance: inst, project: record.project }, () =>
          pass.fleet.setProject(inst.instanceId, record.project),
        );
        if (tagged.ok) inst.project = record.project;
        continue;
      }
      if (inst.project === undefined) continue;
      const bound = await this.boundTo(pass, platform, inst.project);
      if (bound.includes(inst.instanceId)) continue;
      await this.bind(pass, platform, inst, inst.project);
    }
  }

  private async serveDemand(
    pass: Pass,
    platform: Platform,
    demand: Demand,
    mine: () => FleetInstance[],
    byAgent: Map<string, BuilderRecord>,
    byInstance: Map<string, BuilderRecord>,
  ): Promise<void> {
    const { project } = demand;
    const wait = (reason: string): void => {
      pass.report.waiting.push({ platform, project, reason });
    };
    const boundIds = await this.boundTo(pass, platform, project);

    // A bound builder with room: the project's next acquire lands there without us (its agent
    // registered moments ago, or a build just ended).
    const roomy = boundIds.find((id) => {
      const b = byAgent.get(id);
      return b !== undefined && isLinked(b, pass.nowMs) && !b.draining && b.active < b.capacity;
    });
    if (roomy !== undefined) return wait(`builder ${roomy} has room; the next acquire takes it`);

    const boundInstances = boundIds.flatMap((id) => {
      const inst = pass.instances.get(id);
      return inst !== undefined && inst.platform === platform && ALIVE.includes(inst.state) ? [inst] : [];
    });
    // Booting: launched or started, its agent not registered yet. Launching again would only
    // make a second VM for the one build the first is coming up for.
    const booting =
      boundInstances.find((i) => BOOTING.includes(i.state) && !isLinked(byInstance.get(i.instanceId), pass.nowMs))?.instanceId ??
      this.unlistedLaunch(pass, platform, project);
    if (booting !== undefined) return wait(`instance ${booting} is coming up`);

    const stopped = boundInstances
      .filter((i) => i.state === 'stopped')
      .sort((a, b) => (b.stoppedAtMs ?? 0) - (a.stoppedAtMs ?? 0));
    if (stopped.length > 0) {
      // Its builder record from before the stop is drained for good (draining is sticky for the
      // record's epoch): an agent that came back before it lapses would rejoin that record and
      // never take work. Wait for the lease to run out; the agent then registers afresh.
      const ready = stopped.find((i) => !holdsRecord(byInstance.get(i.instanceId), pass.nowMs));
      if (ready === undefined) return wait(`instance ${stopped[0]!.instanceId} holds the cache; its old builder lease has to lapse before it starts`);
      const started = await this.act(pass, 'start', { platform, instance: ready, project }, () => pass.fleet.start([ready.instanceId]));
      if (started.ok) {
        ready.state = 'pending';
        this.options.metrics.builderStarts.inc({ platform, kind: 'warm' });
      }
      return;
    }
    const stopping = boundInstances.find((i) => i.state === 'stopping');
    if (stopping !== undefined) return wait(`instance ${stopping.instanceId} holds the cache and is stopping; it starts once stopped`);

    // A stopped pool instance: no cache for the project, but booted once and ready sooner than a
    // launch. Not one whose drained record still holds a lease (see above): a launch is quicker.
    const pool = mine()
      .filter(
        (i) =>
          i.state === 'stopped' &&
          i.project === undefined &&
          !pass.touched.has(i.instanceId) &&
          !holdsRecord(byInstance.get(i.instanceId), pass.nowMs),
      )
      .sort((a, b) => a.launchedAtMs - b.launchedAtMs || cmp(a.instanceId, b.instanceId));
    for (const inst of pool) {
      // Tag first: a leader that dies after tagging leaves a tag the next pass binds from; one
      // that dies after binding an untagged instance leaves a binding no one can see from EC2.
      const tagged = await this.act(pass, 'setProject', { platform, instance: inst, project }, () => pass.fleet.setProject(inst.instanceId, project));
      if (!tagged.ok) return wait(`claiming pool instance ${inst.instanceId} failed`);
      inst.project = project;
      if (!(await this.bind(pass, platform, inst, project))) {
        // Bound to another project after all (the table is the arbiter): give the tag back.
        const untagged = await this.act(pass, 'setProject', { platform, instance: inst, project: undefined }, () =>
          pass.fleet.setProject(inst.instanceId, undefined),
        );
        if (untagged.ok) inst.project = undefined;
        continue;
      }
      const started = await this.act(pass, 'start', { platform, instance: inst, project }, () => pass.fleet.start([inst.instanceId]));
      if (started.ok) {
        inst.state = 'pending';
        this.options.metrics.builderStarts.inc({ platform, kind: 'cold' });
      }
      return;
    }

    if (!this.hasRoom(pass, platform, mine)) return wait(`the fleet holds ${this.options.maxInstancesPerPlatform} ${platform} instances, its limit`);
    const launched = await this.act(pass, 'launch', { platform, project }, () =>
      pass.fleet.launch({ platform, project, clientToken: demandClientToken(project, platform, demand.sinceMs) }),
    );
    if (!launched.ok) return;
    const inst = { ...launched.value };
    pass.instances.set(inst.instanceId, inst);
    pass.touched.add(inst.instanceId);
    this.launched.set(inst.instanceId, { platform, project, atMs: pass.nowMs });
    this.options.metrics.builderStarts.inc({ platform, kind: 'cold' });
    await this.bind(pass, platform, inst, project);
  }

  private async stopIdle(pass: Pass, platform: Platform, instances: FleetInstance[], byInstance: Map<string, BuilderRecord>): Promise<void> {
    for (const inst of instances) {
      if (inst.state !== 'running' || pass.touched.has(inst.instanceId)) continue;
      const b = byInstance.get(inst.instanceId);
      // Not linked: booting (not registered yet) or its agent is gone; nothing says it is idle.
      if (b === undefined || !isLinked(b, pass.nowMs) || b.active > 0) continue;
      // A throwaway builder (an untrusted build's) is done once idle: it is terminated, not kept.
      const ephemeral = isEphemeralProject(b.project);
      if (!ephemeral && pass.nowMs - b.lastUsedAtMs < this.options.idleStopMs) continue;
      // Drained first, as a compare-and-set against placement: a build placed after our read
      // makes it fail, and the builder keeps running. Already draining (our earlier stop failed,
      // or its agent is shutting down): stop it.
      if (!b.draining && !this.options.dryRun) {
        const drained = await this.act(pass, 'drain', { platform, instance: inst, project: b.project }, () =>
          this.options.table.drainIfIdle(b.agentId, platform, b.epoch),
        );
        if (!drained.ok || !drained.value) continue;
      }
      if (ephemeral) {
        await this.terminate(pass, platform, inst, true);
        continue;
      }
      const stopped = await this.act(pass, 'stop', { platform, instance: inst, project: b.project }, () => pass.fleet.stop([inst.instanceId]));
      if (stopped.ok) inst.state = 'stopping';
    }
  }

  private async expire(pass: Pass, platform: Platform, instances: FleetInstance[], waiting: ReadonlySet<string>): Promise<void> {
    const poolStopped: FleetInstance[] = [];
    for (const inst of instances) {
      if (inst.state !== 'stopped' || pass.touched.has(inst.instanceId)) continue;
      if (inst.stoppedAtMs === undefined) {
        // Stopped outside Slipway (or the tag was lost): stopping again is accepted for a
        // stopped instance and stamps the time, so retention counts from now.
        const stamped = await this.act(pass, 'stop', { platform, instance: inst, project: inst.project }, () => pass.fleet.stop([inst.instanceId]));
        if (stamped.ok) inst.stoppedAtMs = pass.nowMs;
        continue;
      }
      if (inst.project === undefined) {
        poolStopped.push(inst);
        continue;
      }
      // Its project is waiting: it is about to be started, cache and all.
      if (waiting.has(inst.project)) continue;
      if (pass.nowMs - inst.stoppedAtMs < this.options.retentionMs) continue;
      await this.terminate(pass, platform, inst, true);
    }
    // Pool instances hold no cache; they are the warm pool. Only those beyond its size age out.
    const excess = poolStopped.length - this.options.warmPoolSize;
    const expired = poolStopped
      .filter((i) => pass.nowMs - (i.stoppedAtMs ?? pass.nowMs) >= this.options.retentionMs)
      .sort((a, b) => (a.stoppedAtMs ?? 0) - (b.stoppedAtMs ?? 0))
      .slice(0, Math.max(0, excess));
    for (const inst of expired) await this.terminate(pass, platform, inst, false);
  }

  private async keepWarmPool(pass: Pass, platform: Platform, mine: () => FleetInstance[]): Promise<void> {
    const have =
      mine().filter((i) => i.project === undefined).length +
      [...this.launched.entries()].filter(([id, l]) => l.platform === platform && l.project === undefined && !pass.instances.has(id)).length;
    for (let n = have; n < this.options.warmPoolSize; n++) {
      if (!this.hasRoom(pass, platform, mine)) {
        this.options.log.warn('warm pool short: instance limit reached', { platform, limit: this.options.maxInstancesPerPlatform, have: n });
        return;
      }
      // Launched running, stopped by the idle rule once its agent has registered (so the image
      // is pulled and the VM known to boot): from then on a stopped, ready instance.
      const launched = await this.act(pass, 'launch', { platform, project: undefined }, () =>
        pass.fleet.launch({ platform, project: undefined, clientToken: poolClientToken(platform, pass.nowMs, n) }),
      );
      if (!launched.ok) return;
      const inst = { ...launched.value };
      pass.instances.set(inst.instanceId, inst);
      pass.touched.add(inst.instanceId);
      this.launched.set(inst.instanceId, { platform, project: undefined, atMs: pass.nowMs });
    }
  }

  // ---- helpers -----------------------------------------------------------------------------

  private async terminate(pass: Pass, platform: Platform, inst: FleetInstance, release: boolean): Promise<void> {
    const done = await this.act(pass, 'terminate', { platform, instance: inst, project: inst.project }, () => pass.fleet.terminate([inst.instanceId]));
    if (!done.ok) return;
    inst.state = 'shutting-down';
    // The cache is gone with the VM: the project must not wait for it any more.
    if (release && !this.options.dryRun && !isDryRunInstanceId(inst.instanceId)) {
      await this.act(pass, 'release', { platform, instance: inst, project: inst.project }, () =>
        this.options.table.releaseBinding(inst.instanceId, platform),
      );
    }
  }

  /** Binds in the table; true when the instance is now bound to the project. */
  private async bind(pass: Pass, platform: Platform, inst: FleetInstance, project: string): Promise<boolean> {
    // A dry-run launch has no VM behind it; binding it would make the project wait for nothing.
    if (this.options.dryRun || isDryRunInstanceId(inst.instanceId)) return true;
    const bound = await this.act(pass, 'bind', { platform, instance: inst, project }, () =>
      this.options.table.bindBuilder(inst.instanceId, platform, project),
    );
    if (!bound.ok) return false;
    if (!bound.value) {
      this.options.log.warn('instance tagged for a project is bound to another in the routing table', {
        instanceId: inst.instanceId,
        platform,
        project,
      });
      return false;
    }
    const list = await this.boundTo(pass, platform, project);
    if (!list.includes(inst.instanceId)) list.push(inst.instanceId);
    return true;
  }

  private async boundTo(pass: Pass, platform: Platform, project: string): Promise<string[]> {
    const key = `${platform}\0${project}`;
    let ids = pass.bound.get(key);
    if (ids === undefined) {
      ids = [...(await this.read(() => this.options.table.boundBuilders(project, platform)))];
      pass.bound.set(key, ids);
    }
    return ids;
  }

  private hasRoom(pass: Pass, platform: Platform, mine: () => FleetInstance[]): boolean {
    const unlisted = [...this.launched.entries()].filter(([id, l]) => l.platform === platform && !pass.instances.has(id)).length;
    return mine().length + unlisted < this.options.maxInstancesPerPlatform;
  }

  private unlistedLaunch(pass: Pass, platform: Platform, project: string): string | undefined {
    for (const [id, l] of this.launched) {
      if (l.platform === platform && l.project === project && !pass.instances.has(id)) return id;
    }
    return undefined;
  }

  // A launch is remembered until the listing shows it, or for a grace period in which even a
  // lagging listing would have; after that the listing is the truth.
  private forgetListedLaunches(pass: Pass): void {
    const graceMs = Math.max(60_000, 3 * this.options.reconcileIntervalMs);
    for (const [id, l] of this.launched) {
      if (pass.instances.has(id) || pass.nowMs - l.atMs > graceMs) this.launched.delete(id);
    }
  }

  /** Reads from the table; failing, the pass cannot see enough to act, so it ends. */
  private async read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new PassAborted(toGatewayError(err));
    }
  }

  // Runs one action and counts it. STALE_LEADER and an unreachable routing table end the pass;
  // any other failure is this item's alone.
  private async act<T>(
    pass: Pass,
    action: FleetActionName,
    about: { platform?: Platform; instance?: FleetInstance; project?: string | undefined },
    fn: () => Promise<T>,
  ): Promise<Outcome<T>> {
    const entry: FleetActionReport = {
      action,
      platform: about.platform,
      instanceId: about.instance?.instanceId,
      project: about.project,
      outcome: 'ok',
    };
    pass.report.actions.push(entry);
    if (about.instance !== undefined && action !== 'bind' && action !== 'release') pass.touched.add(about.instance.instanceId);
    try {
      const value = await fn();
      this.options.metrics.fleetActions.inc({ action, outcome: 'ok' });
      if (action !== 'list') this.options.log.info(`fleet ${action}`, describe(entry, value));
      return { ok: true, value };
    } catch (err) {
      const error = toGatewayError(err);
      entry.reason = error.message;
      if (error.code === 'STALE_LEADER' || error.code === 'ROUTING_UNAVAILABLE') {
        entry.outcome = 'refused';
        this.options.metrics.fleetActions.inc({ action, outcome: 'refused' });
        throw new PassAborted(error);
      }
      entry.outcome = 'failed';
      this.options.metrics.fleetActions.inc({ action, outcome: 'failed' });
      this.options.log.warn(`fleet ${action} failed`, { ...describe(entry, undefined), code: error.code, reason: error.message });
      return { ok: false, error };
    }
  }
}

function describe(entry: FleetActionReport, value: unknown): Record<string, string> {
  const fields: Record<string, string> = {};
  if (entry.platform !== undefined) fields['platform'] = entry.platform;
  const instanceId = entry.instanceId ?? (isInstance(value) ? value.instanceId : undefined);
  if (instanceId !== undefined) fields['instanceId'] = instanceId;
  fields['project'] = entry.project ?? '(pool)';
  return fields;
}

function isInstance(value: unknown): value is FleetInstance {
  return typeof value === 'object' && value !== null && 'instanceId' in value;
}

/** The record still has a lease: an agent registering now would rejoin it (same epoch). */
function holdsRecord(b: BuilderRecord | undefined, nowMs: number): boolean {
  return b !== undefined && b.leaseExpiresAtMs > nowMs;
}

/** Registered and reachable through at least one replica. */
function isLinked(b: BuilderRecord | undefined, nowMs: number): boolean {
  return holdsRecord(b, nowMs) && b!.gatewayIds.length > 0;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// One demand (a project waiting since sinceMs) maps to one token, whichever leader retries the
// launch: EC2 answers a repeated RunInstances with the instance it already made.
export function demandClientToken(project: string, platform: Platform, sinceMs: number): string {
  return `slipway-d-${createHash('sha256').update(`${project}\0${platform}\0${sinceMs}`).digest('hex').slice(0, 48)}`;
}

function poolClientToken(platform: Platform, nowMs: number, slot: number): string {
  return `slipway-p-${createHash('sha256').update(`${platform}\0${nowMs}\0${slot}`).digest('hex').slice(0, 48)}`;
}
