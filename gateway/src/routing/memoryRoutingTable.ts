import type { Platform } from '@slipway/proto';
import { GatewayError } from '../gatewayError.js';
import type {
  AcquireRequest,
  AcquireResult,
  AllocationEndState,
  AllocationRecord,
  AllocationState,
  BuilderLease,
  BuilderRecord,
  BuilderRegistration,
  BuilderRenewal,
  Demand,
  LeaderLease,
  PendingReason,
  ReapResult,
  RoutingTable,
} from './routingTable.js';
import { DEFAULT_ENDED_ALLOCATION_RETENTION_MS, POOL_SCAN_LIMIT } from './routingTable.js';
import { IdlePool } from './idlePool.js';

// The routing table of a single process (`npm start`, unit tests). Every method does all its
// work before its first await, so concurrent calls interleave only between whole operations,
// the same atomicity the Redis table gets from one Lua script per operation. The rules of
// RedisRoutingTable's scripts (gateway/src/routing/lua/) are repeated here step for step: the
// shared contract tests hold both to them.


export interface MemoryRoutingTableOptions {
  /** Ended allocations are dropped by reap() this long after they ended. */
  endedAllocationRetentionMs?: number;
}

interface BuilderState {
  agentId: string;
  platform: Platform;
  fleet: string;
  capacity: number;
  instanceId: string | undefined;
  epoch: number;
  active: number;
  draining: boolean;
  leaseExpiresAtMs: number;
  registeredAtMs: number;
  lastUsedAtMs: number;
  /** gateway id -> link expiry */
  links: Map<string, number>;
  /** Active allocations on it. */
  allocs: Set<string>;
}

interface BindingState {
  project: string;
  /** The fleet instance that holds the cache; a different instance may not take the binding. */
  instanceId: string | undefined;
}

interface AllocationState_ extends AllocationRecord {
  warm: boolean;
  spilled: boolean;
}

interface DemandState {
  sinceMs: number;
  boundAgentIds: string[];
  /** The demand lapses when nobody asked again until here (the last pending deadline). */
  untilMs: number;
}

interface PlatformState {
  builders: Map<string, BuilderState>;
  bindings: Map<string, BindingState>;
  /** project -> builders bound to it: the bindings seen from the project's side. */
  projects: Map<string, Set<string>>;
  /** Unbound idle builders, idle longest first (RedisRoutingTable's pool:idle). */
  pool: IdlePool;
  allocs: Map<string, AllocationState_>;
  demands: Map<string, DemandState>;
  epochSeq: number;
}

interface LeaderState {
  holderId: string;
  token: number;
  expiresAtMs: number;
}

function isEnded(state: AllocationState): boolean {
  return state !== 'pending' && state !== 'active';
}

function isLive(b: BuilderState, nowMs: number): boolean {
  if (b.draining || b.leaseExpiresAtMs <= nowMs) return false;
  for (const expiry of b.links.values()) if (expiry > nowMs) return true;
  return false;
}

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class MemoryRoutingTable implements RoutingTable {
  private readonly platforms = new Map<Platform, PlatformState>();
  private readonly replicas = new Map<string, { url: string; expiresAtMs: number }>();
  private readonly leaders = new Map<string, LeaderState>();
  // Survives resignations and expiry: fencing tokens only ever grow.
  private readonly leaderTokens = new Map<string, number>();
  private readonly endedRetentionMs: number;

  constructor(opts: MemoryRoutingTableOptions = {}) {
    this.endedRetentionMs = opts.endedAllocationRetentionMs ?? DEFAULT_ENDED_ALLOCATION_RETENTION_MS;
  }

  // Builders -----------------------------------------------------------------------------

  async registerBuilder(reg: BuilderRegistration): Promise<BuilderLease> {
    const p = this.state(reg.platform);
    const now = reg.nowMs;
    let b = p.builders.get(reg.agentId);
    const binding = p.bindings.get(reg.agentId);
    const liveRecord = b !== undefined && b.leaseExpiresAtMs > now;
    const claimed = (liveRecord ? b?.instanceId : undefined) ?? binding?.instanceId;
    if (claimed !== undefined && reg.instanceId !== claimed) {
      throw new GatewayError(
        'FORBIDDEN',
        `builder ${reg.agentId} (${reg.platform}) belongs to instance ${claimed}; a registration from ${reg.instanceId ?? 'no instance'} cannot take it`,
      );
    }
    if (b !== undefined && !liveRecord) {
      // It came back after its lease passed: what it ran before is lost, whether or not reap() saw it.
      this.expireBuilder(p, b, now);
      b = undefined;
    }
    const expiry = now + reg.leaseMs;
    if (b === undefined) {
      b = {
        agentId: reg.agentId,
        platform: reg.platform,
        fleet: reg.fleet,
        capacity: reg.capacity,
        instanceId: reg.instanceId,
        epoch: ++p.epochSeq,
        active: 0,
        draining: false,
        leaseExpiresAtMs: expiry,
        registeredAtMs: now,
        lastUsedAtMs: now,
        links: new Map([[reg.gatewayId, expiry]]),
        allocs: new Set(),
      };
      p.builders.set(reg.agentId, b);
    } else {
      b.fleet = reg.fleet;
      b.capacity = reg.capacity;
      b.instanceId ??= reg.instanceId;
      b.links.set(reg.gatewayId, expiry);
      b.leaseExpiresAtMs = Math.max(b.leaseExpiresAtMs, expiry);
      pruneLinks(b, now);
    }
    if (binding !== undefined && binding.instanceId === undefined) binding.instanceId = reg.instanceId;
    // A new incarnation, a link back after the pool dropped it for having none, or a new capacity.
    this.syncPool(p, b.agentId);
    return { agentId: b.agentId, platform: b.platform, epoch: b.epoch, project: binding?.project };
  }

  async renewBuilder(r: BuilderRenewal): Promise<boolean> {
    const p = this.state(r.platform);
    const b = p.builders.get(r.agentId);
    // Past its lease the builder must register again (new epoch): reap() may already have failed its work.
    if (b === undefined || b.epoch !== r.epoch || b.leaseExpiresAtMs <= r.nowMs) return false;
    const expiry = r.nowMs + r.leaseMs;
    b.links.set(r.gatewayId, expiry);
    b.leaseExpiresAtMs = Math.max(b.leaseExpiresAtMs, expiry);
    // Draining is sticky for the epoch: a renewal from an agent that does not know the fleet
    // drained it must not make it placeable again.
    if (r.draining) b.draining = true;
    pruneLinks(b, r.nowMs);
    // Acquire or reap may have dropped it from the pool while it had no live link; it has one now.
    this.syncPool(p, b.agentId);
    return true;
  }

  async unlinkBuilder(agentId: string, platform: Platform, gatewayId: string, epoch: number): Promise<void> {
    const b = this.state(platform).builders.get(agentId);
    if (b !== undefined && b.epoch === epoch) b.links.delete(gatewayId);
  }

  async getBuilder(agentId: string, platform: Platform): Promise<BuilderRecord | undefined> {
    const p = this.state(platform);
    const b = p.builders.get(agentId);
    return b === undefined ? undefined : this.builderRecord(p, b);
  }

  async listBuilders(platform: Platform): Promise<BuilderRecord[]> {
    const p = this.state(platform);
    return [...p.builders.values()].sort((x, y) => byId(x.agentId, y.agentId)).map((b) => this.builderRecord(p, b));
  }

  async bindBuilder(agentId: string, platform: Platform, project: string): Promise<boolean> {
    const p = this.state(platform);
    const binding = p.bindings.get(agentId);
    if (binding !== undefined) return binding.project === project;
    const b = p.builders.get(agentId);
    // Still finishing builds of the project it was released from: those must not share it.
    if (b !== undefined && b.active > 0) return false;
    this.bind(p, agentId, project, b?.instanceId);
    return true;
  }

  async releaseBinding(agentId: string, platform: Platform): Promise<void> {
    this.unbind(this.state(platform), agentId);
  }

  async boundBuilders(project: string, platform: Platform): Promise<string[]> {
    return this.boundTo(this.state(platform), project);
  }

  async drainIfIdle(agentId: string, platform: Platform, epoch: number): Promise<boolean> {
    const p = this.state(platform);
    const b = p.builders.get(agentId);
    if (b === undefined || b.epoch !== epoch || b.active > 0) return false;
    b.draining = true;
    // Draining is sticky for the epoch: it leaves the pool until it registers as a new incarnation.
    p.pool.delete(agentId);
    return true;
  }

  // Allocations --------------------------------------------------------------------------

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const p = this.state(req.platform);
    const now = req.nowMs;
    let a = p.allocs.get(req.buildId);
    if (a !== undefined) {
      if (a.project !== req.project) {
        throw new GatewayError('FORBIDDEN', `build ${req.buildId} belongs to project ${a.project}, not ${req.project}`);
      }
      this.settle(p, a, now);
      if (isEnded(a.state)) return endedResult(a);
      a.heartbeatDeadlineMs = now + req.allocationLeaseMs;
      if (a.state === 'active') {
        return {
          state: 'active',
          agentId: a.agentId ?? '',
          builderEpoch: a.builderEpoch ?? 0,
          warm: a.warm,
          spilled: a.spilled,
          waitedMs: (a.activeAtMs ?? now) - a.createdAtMs,
          placedNow: false,
        };
      }
    } else {
      a = {
        buildId: req.buildId,
        project: req.project,
        platform: req.platform,
        state: 'pending',
        agentId: undefined,
        builderEpoch: undefined,
        reason: undefined,
        createdAtMs: now,
        activeAtMs: undefined,
        heartbeatDeadlineMs: now + req.allocationLeaseMs,
        endedAtMs: undefined,
        warm: false,
        spilled: false,
      };
      p.allocs.set(req.buildId, a);
    }

    const bound = this.boundTo(p, req.project).map((id) => ({ id, b: p.builders.get(id) }));
    let warmPick: BuilderState | undefined;
    for (const { b } of bound) {
      if (b === undefined || !isLive(b, now) || b.active >= b.capacity) continue;
      // The most recently used one: keeps one VM warm instead of spreading builds over all of them.
      if (warmPick === undefined || b.lastUsedAtMs > warmPick.lastUsedAtMs) warmPick = b;
    }
    if (warmPick !== undefined) return this.place(p, a, warmPick, now, req.allocationLeaseMs, true, false);

    const boundLive = bound.some(({ b }) => b !== undefined && isLive(b, now));
    const wantPool = bound.length === 0 || now - a.createdAtMs >= req.spillAfterMs;
    // The pool head held only builders that are no longer placeable, and more entries are left:
    // the pool is not known to be empty, so the fleet is not asked; the next acquire looks further.
    let scanCut = false;
    if (wantPool) {
      // The one idle longest first (ties by id): the others stay warm for whatever they ran last.
      const head = p.pool.head(POOL_SCAN_LIMIT);
      let poolPick: BuilderState | undefined;
      for (const id of head) {
        const b = p.builders.get(id);
        if (b !== undefined && b.active === 0 && b.capacity >= 1 && isLive(b, now) && !p.bindings.has(id)) {
          poolPick = b;
          break;
        }
        // Not placeable, mostly because its lease passed or its last link went away since it
        // joined the pool: whatever makes it placeable again (a registration, a renewal, its
        // last build ending) puts it back.
        p.pool.delete(id);
      }
      if (poolPick !== undefined) {
        this.bind(p, poolPick.agentId, req.project, poolPick.instanceId);
        return this.place(p, a, poolPick, now, req.allocationLeaseMs, false, bound.length > 0);
      }
      scanCut = head.length === POOL_SCAN_LIMIT && p.pool.size > 0;
    }
    const reason: PendingReason = boundLive ? 'busy' : bound.length > 0 ? 'starting' : 'no-builder';
    if ((wantPool && !scanCut) || reason === 'starting') {
      const offline = bound.filter(({ b }) => b === undefined || !isLive(b, now)).map(({ id }) => id);
      const until = a.heartbeatDeadlineMs ?? now;
      const d = p.demands.get(req.project);
      if (d === undefined) p.demands.set(req.project, { sinceMs: now, boundAgentIds: offline, untilMs: until });
      else {
        d.boundAgentIds = offline;
        d.untilMs = Math.max(d.untilMs, until);
      }
    }
    return { state: 'pending', reason, waitedMs: now - a.createdAtMs };
  }

  async heartbeatAllocation(buildId: string, platform: Platform, nowMs: number, allocationLeaseMs: number): Promise<AllocationRecord | undefined> {
    const p = this.state(platform);
    const a = p.allocs.get(buildId);
    if (a === undefined) return undefined;
    this.settle(p, a, nowMs);
    if (a.state === 'active') a.heartbeatDeadlineMs = nowMs + allocationLeaseMs;
    return publicAllocation(a);
  }

  async endAllocation(buildId: string, platform: Platform, state: AllocationEndState, reason: string, nowMs: number): Promise<AllocationRecord | undefined> {
    const p = this.state(platform);
    const a = p.allocs.get(buildId);
    if (a === undefined) return undefined;
    this.settle(p, a, nowMs);
    if (!isEnded(a.state)) this.end(p, a, state, reason, nowMs);
    return publicAllocation(a);
  }

  async getAllocation(buildId: string, platform: Platform): Promise<AllocationRecord | undefined> {
    const a = this.state(platform).allocs.get(buildId);
    return a === undefined ? undefined : publicAllocation(a);
  }

  async allocationsOn(agentId: string, platform: Platform): Promise<string[]> {
    const b = this.state(platform).builders.get(agentId);
    return b === undefined ? [] : [...b.allocs].sort(byId);
  }

  async reap(platform: Platform, nowMs: number): Promise<ReapResult> {
    const p = this.state(platform);
    const result: ReapResult = { expiredBuilders: [], failedAllocations: [], expiredAllocations: [] };
    const expired = [...p.builders.values()]
      .filter((b) => b.leaseExpiresAtMs <= nowMs)
      .sort((x, y) => x.leaseExpiresAtMs - y.leaseExpiresAtMs || byId(x.agentId, y.agentId));
    for (const b of expired) {
      result.expiredBuilders.push(b.agentId);
      result.failedAllocations.push(...this.expireBuilder(p, b, nowMs));
    }
    const overdue = [...p.allocs.values()]
      .filter((a) => !isEnded(a.state) && (a.heartbeatDeadlineMs ?? Infinity) <= nowMs)
      .sort((x, y) => (x.heartbeatDeadlineMs ?? 0) - (y.heartbeatDeadlineMs ?? 0) || byId(x.buildId, y.buildId));
    for (const a of overdue) {
      this.settle(p, a, nowMs);
      if (a.state === 'expired') result.expiredAllocations.push(a.buildId);
    }
    for (const b of p.builders.values()) {
      pruneLinks(b, nowMs);
      // No replica holds it: out of the pool, so acquire need not step over it; a renewal or a
      // registration puts it back.
      if (b.links.size === 0) p.pool.delete(b.agentId);
    }
    for (const [project, d] of p.demands) if (d.untilMs <= nowMs) p.demands.delete(project);
    for (const [id, a] of p.allocs) {
      if (a.endedAtMs !== undefined && a.endedAtMs + this.endedRetentionMs <= nowMs) p.allocs.delete(id);
    }
    return result;
  }

  // Fleet --------------------------------------------------------------------------------

  async listDemands(platform: Platform): Promise<Demand[]> {
    return [...this.state(platform).demands]
      .map(([project, d]) => ({ project, platform, sinceMs: d.sinceMs, boundAgentIds: [...d.boundAgentIds] }))
      .sort((x, y) => x.sinceMs - y.sinceMs || byId(x.project, y.project));
  }

  // Replicas and leadership --------------------------------------------------------------

  async announceReplica(gatewayId: string, internalUrl: string, nowMs: number, ttlMs: number): Promise<void> {
    this.replicas.set(gatewayId, { url: internalUrl, expiresAtMs: nowMs + ttlMs });
  }

  async listReplicas(nowMs: number): Promise<Map<string, string>> {
    const live = new Map<string, string>();
    for (const [id, r] of [...this.replicas].sort(([x], [y]) => byId(x, y))) {
      if (r.expiresAtMs > nowMs) live.set(id, r.url);
      else this.replicas.delete(id);
    }
    return live;
  }

  async acquireLeadership(name: string, holderId: string, nowMs: number, ttlMs: number): Promise<LeaderLease | undefined> {
    const current = this.leaders.get(name);
    if (current !== undefined && current.expiresAtMs > nowMs) {
      if (current.holderId !== holderId) return undefined;
      current.expiresAtMs = nowMs + ttlMs;
      return { ...current };
    }
    const token = (this.leaderTokens.get(name) ?? 0) + 1;
    this.leaderTokens.set(name, token);
    const lease = { holderId, token, expiresAtMs: nowMs + ttlMs };
    this.leaders.set(name, lease);
    return { ...lease };
  }

  async checkFence(name: string, token: number, nowMs: number): Promise<boolean> {
    const current = this.leaders.get(name);
    return current !== undefined && current.token === token && current.expiresAtMs > nowMs;
  }

  async resignLeadership(name: string, token: number): Promise<void> {
    if (this.leaders.get(name)?.token === token) this.leaders.delete(name);
  }

  async close(): Promise<void> {
    // Nothing is held outside this object.
  }

  // Internals ----------------------------------------------------------------------------

  private state(platform: Platform): PlatformState {
    let p = this.platforms.get(platform);
    if (p === undefined) {
      p = { builders: new Map(), bindings: new Map(), projects: new Map(), pool: new IdlePool(), allocs: new Map(), demands: new Map(), epochSeq: 0 };
      this.platforms.set(platform, p);
    }
    return p;
  }

  private boundTo(p: PlatformState, project: string): string[] {
    return [...(p.projects.get(project) ?? [])].sort(byId);
  }

  private bind(p: PlatformState, agentId: string, project: string, instanceId: string | undefined): void {
    p.bindings.set(agentId, { project, instanceId });
    let ids = p.projects.get(project);
    if (ids === undefined) p.projects.set(project, (ids = new Set()));
    ids.add(agentId);
    p.pool.delete(agentId);
  }

  private unbind(p: PlatformState, agentId: string): void {
    const binding = p.bindings.get(agentId);
    if (binding === undefined) return;
    const ids = p.projects.get(binding.project);
    ids?.delete(agentId);
    if (ids?.size === 0) p.projects.delete(binding.project);
    p.bindings.delete(agentId);
    this.syncPool(p, agentId);
  }

  /**
   * Keeps a builder's pool entry in step with what it is: in the pool, at the time it has been
   * idle since, while it has a record, is unbound, not draining, runs nothing and has a slot;
   * out otherwise. What time alone takes away (the lease, the links) is not judged here: acquire
   * and reap drop such entries as they meet them, and the registration or renewal that brings
   * the builder back calls this again.
   */
  private syncPool(p: PlatformState, agentId: string): void {
    // Binding takes a builder out of the pool (bind()), so for a bound one there is nothing to do.
    if (p.bindings.has(agentId)) return;
    const b = p.builders.get(agentId);
    if (b !== undefined && b.active === 0 && b.capacity >= 1 && !b.draining) p.pool.set(agentId, b.lastUsedAtMs);
    else p.pool.delete(agentId);
  }

  private builderRecord(p: PlatformState, b: BuilderState): BuilderRecord {
    return {
      agentId: b.agentId,
      platform: b.platform,
      fleet: b.fleet,
      capacity: b.capacity,
      instanceId: b.instanceId,
      epoch: b.epoch,
      project: p.bindings.get(b.agentId)?.project,
      active: b.active,
      draining: b.draining,
      leaseExpiresAtMs: b.leaseExpiresAtMs,
      gatewayIds: [...b.links.keys()].sort(byId),
      registeredAtMs: b.registeredAtMs,
      lastUsedAtMs: b.lastUsedAtMs,
    };
  }

  private place(
    p: PlatformState,
    a: AllocationState_,
    b: BuilderState,
    now: number,
    allocationLeaseMs: number,
    warm: boolean,
    spilled: boolean,
  ): AcquireResult {
    b.active++;
    b.lastUsedAtMs = now;
    b.allocs.add(a.buildId);
    a.state = 'active';
    a.agentId = b.agentId;
    a.builderEpoch = b.epoch;
    a.activeAtMs = now;
    a.heartbeatDeadlineMs = now + allocationLeaseMs;
    a.warm = warm;
    a.spilled = spilled;
    p.demands.delete(a.project);
    return { state: 'active', agentId: b.agentId, builderEpoch: b.epoch, warm, spilled, waitedMs: now - a.createdAtMs, placedNow: true };
  }

  /** Applies what time alone decides about an open allocation: a lost builder, a missed deadline. */
  private settle(p: PlatformState, a: AllocationState_, now: number): void {
    if (a.state === 'active') {
      const b = a.agentId === undefined ? undefined : p.builders.get(a.agentId);
      if (b === undefined || b.epoch !== a.builderEpoch) {
        this.end(p, a, 'failed', `builder ${a.agentId ?? '?'} (epoch ${a.builderEpoch ?? '?'}) is gone`, now);
        return;
      }
      if (b.leaseExpiresAtMs <= now) {
        this.end(p, a, 'failed', builderLostReason(b), now);
        return;
      }
    }
    if (a.state === 'active' || a.state === 'pending') {
      const deadline = a.heartbeatDeadlineMs ?? Infinity;
      if (deadline <= now) {
        const what = a.state === 'active' ? 'no heartbeat' : 'not acquired again';
        this.end(p, a, 'expired', `${what} before its deadline ${deadline}`, now);
      }
    }
  }

  private end(p: PlatformState, a: AllocationState_, state: AllocationEndState, reason: string, now: number): void {
    if (a.state === 'active' && a.agentId !== undefined) {
      const b = p.builders.get(a.agentId);
      if (b !== undefined && b.epoch === a.builderEpoch && b.allocs.delete(a.buildId)) {
        b.active--;
        b.lastUsedAtMs = now;
        // Released while it still ran this build: it joins the pool now, idle from now.
        this.syncPool(p, b.agentId);
      }
    }
    a.state = state;
    a.reason = state === 'finished' ? undefined : reason;
    a.endedAtMs = now;
    a.heartbeatDeadlineMs = undefined;
  }

  /** Fails the builder's active allocations and removes its record (its binding stays). */
  private expireBuilder(p: PlatformState, b: BuilderState, now: number): string[] {
    const reason = builderLostReason(b);
    const failed = [...b.allocs].sort(byId);
    for (const id of failed) {
      const a = p.allocs.get(id);
      if (a !== undefined) this.end(p, a, 'failed', reason, now);
    }
    p.builders.delete(b.agentId);
    p.pool.delete(b.agentId);
    return failed;
  }
}

function builderLostReason(b: BuilderState): string {
  return `builder ${b.agentId} (epoch ${b.epoch}) lost its lease at ${b.leaseExpiresAtMs}`;
}

function pruneLinks(b: BuilderState, now: number): void {
  for (const [gatewayId, expiry] of b.links) if (expiry <= now) b.links.delete(gatewayId);
}

function endedResult(a: AllocationRecord): AcquireResult {
  return { state: a.state as AllocationEndState, reason: a.reason ?? a.state };
}

function publicAllocation(a: AllocationState_): AllocationRecord {
  return {
    buildId: a.buildId,
    project: a.project,
    platform: a.platform,
    state: a.state,
    agentId: a.agentId,
    builderEpoch: a.builderEpoch,
    reason: a.reason,
    createdAtMs: a.createdAtMs,
    activeAtMs: a.activeAtMs,
    heartbeatDeadlineMs: a.heartbeatDeadlineMs,
    endedAtMs: a.endedAtMs,
  };
}
