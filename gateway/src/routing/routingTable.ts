import type { Platform } from '@slipway/proto';

// The routing table: what every gateway replica must agree on to place builds. Two
// implementations pass the same contract tests (gateway/test/support/routingTableContract.ts):
// RedisRoutingTable (shared by replicas, Lua scripts, Redis Cluster safe) and MemoryRoutingTable
// (one process: `npm start` and unit tests).
//
// Vocabulary
// - builder: one build VM, known by its agent id. A builder is *bound* to at most one project
//   at a time (its cache holds that project's layers and nothing else); an unbound live builder
//   is in the *pool*. A binding outlives the builder's connection and lease: a stopped VM keeps
//   its cache, so it keeps its project. Only releaseBinding() (the VM and its cache are gone)
//   frees it.
// - lease: a builder is placeable only while its lease (renewed by every replica that holds a
//   link to it) is in the future, it has at least one live link, and it is not draining.
// - pool order: a build that takes a pool builder gets the placeable one idle longest (lowest
//   lastUsedAtMs, ties to the lower agent id), so the others keep whatever they cached last.
//   Implementations keep the pool ordered by that, so the choice reads the head of the order
//   instead of every builder. Entries that turn out not placeable there (the lease passed or the
//   last link went away since the builder entered the pool) are dropped as they are met; at most
//   POOL_SCAN_LIMIT entries are looked at per acquire, and a build whose look found only such
//   entries with more left stays pending without a demand (the next acquire looks further).
// - allocation: one (build, platform) pair: pending, then active on one builder, then ended.
//   An active allocation holds one of the builder's `capacity` slots until it ends or its
//   heartbeat deadline passes.
//
// Consistency rules every implementation keeps, whatever the interleaving of calls from any
// number of replicas:
// - a builder's active allocations never exceed its capacity;
// - an allocation is active on at most one builder, and is never placed twice;
// - a builder only ever runs allocations of the project it is bound to;
// - a builder whose lease has passed is never chosen, and reap() fails its active allocations.
//
// All times are caller-supplied epoch milliseconds (`nowMs`) so tests and the placement
// simulation can drive a clock; implementations never read the wall clock for decisions.

/**
 * Most pool entries one acquire looks at. Only builders whose lease passed or whose links all
 * went away since they entered the pool are skipped (and dropped): reap() clears both every
 * tick, so meeting more than this many at the head of the pool at once is rare.
 */
export const POOL_SCAN_LIMIT = 32;

/** How long an ended allocation stays readable, in every implementation. */
export const DEFAULT_ENDED_ALLOCATION_RETENTION_MS = 3_600_000;

export type AllocationState = 'pending' | 'active' | 'finished' | 'cancelled' | 'failed' | 'expired';
export const AllocationEndStates = ['finished', 'cancelled', 'failed', 'expired'] as const;
export type AllocationEndState = (typeof AllocationEndStates)[number];

export interface BuilderRegistration {
  agentId: string;
  platform: Platform;
  fleet: string;
  /** Builds the builder runs at once. */
  capacity: number;
  /** The EC2 instance (or other fleet member id) the agent runs on, when the fleet launched it. */
  instanceId?: string;
  /** The gateway replica that holds this link. */
  gatewayId: string;
  nowMs: number;
  leaseMs: number;
}

export interface BuilderLease {
  agentId: string;
  platform: Platform;
  /**
   * Incarnation of the builder record. Stays the same while any replica keeps the lease alive;
   * a builder that expired and came back gets a new one, so stale renewals are refused.
   */
  epoch: number;
  /** The project the builder is bound to, if any. */
  project: string | undefined;
}

export interface BuilderRenewal {
  agentId: string;
  platform: Platform;
  gatewayId: string;
  epoch: number;
  nowMs: number;
  leaseMs: number;
  draining: boolean;
}

export interface BuilderRecord {
  agentId: string;
  platform: Platform;
  fleet: string;
  capacity: number;
  instanceId: string | undefined;
  epoch: number;
  project: string | undefined;
  /** Active allocations on it. */
  active: number;
  draining: boolean;
  leaseExpiresAtMs: number;
  /** Replicas holding a live link to this builder (link expiry in the future). */
  gatewayIds: string[];
  registeredAtMs: number;
  /** When an allocation last started or ended on it (idle detection). */
  lastUsedAtMs: number;
}

export interface AcquireRequest {
  buildId: string;
  project: string;
  platform: Platform;
  nowMs: number;
  /** A pending allocation waits this long for its project's own builders before spilling to the pool. */
  spillAfterMs: number;
  /** An active allocation whose heartbeats stop ends (expired) this long after the last one. */
  allocationLeaseMs: number;
}

export type PendingReason =
  /** The project's builders are live but full. */
  | 'busy'
  /** The project has bound builders that are not connected (stopped VMs with its cache): the fleet is asked to start one. */
  | 'starting'
  /** No builder is bound to the project and the pool is empty: the fleet is asked for one. */
  | 'no-builder';

export type AcquireResult =
  | {
      state: 'active';
      agentId: string;
      /** Builder epoch at placement: a tunnel may only use the builder while it is unchanged. */
      builderEpoch: number;
      /** Placed on a builder already bound to the project. */
      warm: boolean;
      /** Took a pool builder although the project had bound builders (they were busy or away). */
      spilled: boolean;
      /** Time from the allocation's first acquire to placement. */
      waitedMs: number;
      /** True when this call placed it (false: it was already active, the call is a repeat). */
      placedNow: boolean;
    }
  | { state: 'pending'; reason: PendingReason; waitedMs: number }
  | { state: AllocationEndState; reason: string };

export interface AllocationRecord {
  buildId: string;
  project: string;
  platform: Platform;
  state: AllocationState;
  agentId: string | undefined;
  builderEpoch: number | undefined;
  /** Why it ended, when it ended other than 'finished'. */
  reason: string | undefined;
  createdAtMs: number;
  activeAtMs: number | undefined;
  heartbeatDeadlineMs: number | undefined;
  endedAtMs: number | undefined;
}

export interface Demand {
  project: string;
  platform: Platform;
  /** When a pending allocation first asked for a builder for this project. */
  sinceMs: number;
  /** Builders bound to the project that are not live (what the fleet should start first). */
  boundAgentIds: string[];
}

export interface ReapResult {
  /** Builders whose lease passed: removed from placement. */
  expiredBuilders: string[];
  /** Allocations failed because their builder expired. */
  failedAllocations: string[];
  /** Allocations whose heartbeats stopped: their slots were freed. */
  expiredAllocations: string[];
}

export interface LeaderLease {
  holderId: string;
  /** Strictly increasing across all holders: a fencing token. */
  token: number;
  expiresAtMs: number;
}

export interface RoutingTable {
  // Builders -----------------------------------------------------------------------------
  /**
   * A replica gained a link to an agent. Creates the builder record (new epoch) when absent or
   * expired, else adds the link and refreshes capacity; binding comes from the persistent
   * binding record. Fails with NO_CAPACITY never; with FORBIDDEN when the builder is bound to
   * an instance id that differs.
   */
  registerBuilder(reg: BuilderRegistration): Promise<BuilderLease>;
  /** Renews the lease and this replica's link. Returns false (stale) when the epoch no longer matches. */
  renewBuilder(renewal: BuilderRenewal): Promise<boolean>;
  /** This replica's link closed. The record stays until its lease passes (the agent may come back). */
  unlinkBuilder(agentId: string, platform: Platform, gatewayId: string, epoch: number): Promise<void>;
  getBuilder(agentId: string, platform: Platform): Promise<BuilderRecord | undefined>;
  listBuilders(platform: Platform): Promise<BuilderRecord[]>;
  /**
   * Binds a builder (live or not) to a project, e.g. when the fleet launches a VM for it.
   * Compare-and-set: succeeds when unbound or already bound to the same project.
   */
  bindBuilder(agentId: string, platform: Platform, project: string): Promise<boolean>;
  /** The builder's cache is gone (VM terminated, cache pruned): frees its binding. */
  releaseBinding(agentId: string, platform: Platform): Promise<void>;
  /** Builders bound to the project, live or not. */
  boundBuilders(project: string, platform: Platform): Promise<string[]>;
  /**
   * Marks a live builder draining if (and only if) it has no active allocation and its epoch
   * matches, so the fleet can stop it without racing a placement. Returns whether it did.
   */
  drainIfIdle(agentId: string, platform: Platform, epoch: number): Promise<boolean>;

  // Allocations --------------------------------------------------------------------------
  acquire(req: AcquireRequest): Promise<AcquireResult>;
  /** Pushes an active allocation's deadline. Returns its current record (its state says whether it is still active). */
  heartbeatAllocation(buildId: string, platform: Platform, nowMs: number, allocationLeaseMs: number): Promise<AllocationRecord | undefined>;
  /** Ends an allocation (idempotent: an ended one keeps its first end state). Frees its slot. */
  endAllocation(buildId: string, platform: Platform, state: AllocationEndState, reason: string, nowMs: number): Promise<AllocationRecord | undefined>;
  getAllocation(buildId: string, platform: Platform): Promise<AllocationRecord | undefined>;
  /** Active allocations on a builder. */
  allocationsOn(agentId: string, platform: Platform): Promise<string[]>;

  /** Expires builders and allocations whose time has passed. Idempotent; any replica may call it. */
  reap(platform: Platform, nowMs: number): Promise<ReapResult>;

  // Fleet --------------------------------------------------------------------------------
  /** Projects waiting for a builder the pool could not give them. */
  listDemands(platform: Platform): Promise<Demand[]>;

  // Replicas and leadership --------------------------------------------------------------
  /** Announces a gateway replica and where other replicas reach it. */
  announceReplica(gatewayId: string, internalUrl: string, nowMs: number, ttlMs: number): Promise<void>;
  /** Live replicas: gateway id -> internal URL. */
  listReplicas(nowMs: number): Promise<Map<string, string>>;
  /** Takes or renews leadership; returns the lease when this holder has it. A new holder gets a larger token. */
  acquireLeadership(name: string, holderId: string, nowMs: number, ttlMs: number): Promise<LeaderLease | undefined>;
  /** True while `token` is the current, unexpired leader token for `name`. */
  checkFence(name: string, token: number, nowMs: number): Promise<boolean>;
  /** Gives leadership up (only when still held with this token). */
  resignLeadership(name: string, token: number): Promise<void>;

  close(): Promise<void>;
}
