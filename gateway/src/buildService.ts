import { randomUUID } from 'node:crypto';
import { Platforms, isPlatform, type Logger, type Platform } from '@slipway/proto';
import { GatewayError } from './gatewayError.js';
import type { ClientIdentity } from './authenticator.js';
import type { TokenIssuer } from './tokenIssuer.js';
import type { GatewayMetrics } from './metrics.js';
import type { AllocationRecord, PendingReason, RoutingTable } from './routing/routingTable.js';
import { ephemeralProjectFor } from './ephemeralProject.js';

export interface BuildServiceOptions {
  table: RoutingTable;
  /** Signs build tokens with the gateway's own key (every replica shares it). */
  issuer: TokenIssuer;
  metrics: GatewayMetrics;
  log: Logger;
  /** A build waits this long for its project's busy or starting builders, then spills to the pool. */
  spillAfterMs: number;
  /** A build whose heartbeats stop for this long releases its builders. */
  buildLeaseMs: number;
  /** What clients are told to use between heartbeats. */
  buildHeartbeatIntervalMs: number;
  buildTokenTtlSec: number;
  /** Whether the fleet can bring up a builder of this platform (false for the local fleet). */
  canProvision: (platform: Platform) => boolean;
  /** Whether the project runs builds from untrusted CI identities on throwaway builders. */
  isolateUntrusted?: (project: string) => Promise<boolean>;
  now?: () => number;
}

export interface CreatedBuild {
  buildId: string;
  project: string;
  platforms: Platform[];
  token: string;
  tokenExpiresAt: string;
  heartbeatIntervalMs: number;
}

export type AcquireAnswer =
  | { state: 'active'; platform: Platform; builder: { agentId: string }; warm: boolean; spilled: boolean; waitedMs: number }
  | { state: 'pending'; platform: Platform; reason: PendingReason; message: string; retryAfterMs: number; waitedMs: number }
  | { state: 'finished' | 'cancelled' | 'failed' | 'expired'; platform: Platform; error: { code: string; message: string } };

export interface BuildStatus {
  buildId: string;
  project: string;
  allocations: Array<{
    platform: Platform;
    state: AllocationRecord['state'];
    agentId: string | undefined;
    reason: string | undefined;
  }>;
  /** Set when a heartbeat found the build token past half its life: use this one from now on. */
  token?: string;
  tokenExpiresAt?: string;
}

const PENDING_MESSAGE: Record<PendingReason, string> = {
  busy: "the project's builders are all busy",
  starting: "the project's builder (which holds its cache) is starting",
  'no-builder': 'no builder is free; one is being brought up',
};

// The build lifecycle behind /v1/builds: create (mint a build id and token), acquire a builder
// per platform, heartbeat, finish or cancel. Placement itself is the routing table's atomic
// acquire; this class checks who may do what, and counts.
export class BuildService {
  private readonly now: () => number;

  constructor(private readonly options: BuildServiceOptions) {
    this.now = options.now ?? Date.now;
  }

  async create(identity: ClientIdentity, platformsInput: unknown): Promise<CreatedBuild> {
    if (identity.buildId !== undefined) {
      throw new GatewayError('FORBIDDEN', `a build token (for build ${identity.buildId}) cannot create builds; use a project token`);
    }
    const platforms = parsePlatforms(platformsInput);
    const buildId = randomUUID();
    const ttlSec = this.options.buildTokenTtlSec;
    const token = await this.options.issuer.issueBuildToken({
      project: identity.project,
      subject: identity.subject,
      buildId,
      ttlSec,
      parentTokenId: identity.tokenId,
      untrusted: identity.untrusted,
    });
    this.options.log.info('build created', { buildId, project: identity.project, platforms: platforms.join(','), subject: identity.subject });
    return {
      buildId,
      project: identity.project,
      platforms,
      token,
      tokenExpiresAt: new Date(this.now() + ttlSec * 1000).toISOString(),
      heartbeatIntervalMs: this.options.buildHeartbeatIntervalMs,
    };
  }

  // The name placement knows the build's project by: the project itself, or, for an untrusted
  // identity of a project that isolates those, a project of the build's own (a throwaway builder).
  private async placementProject(identity: ClientIdentity, buildId: string, platform: Platform): Promise<string> {
    if (!identity.untrusted || !(await this.options.isolateUntrusted?.(identity.project))) return identity.project;
    if (!this.options.canProvision(platform)) {
      throw new GatewayError(
        'FORBIDDEN',
        `project '${identity.project}' runs untrusted builds on throwaway builders, and this gateway's fleet cannot provide a ${platform} one`,
      );
    }
    return ephemeralProjectFor(identity.project, buildId);
  }

  async acquire(identity: ClientIdentity, buildId: string, platformInput: unknown): Promise<AcquireAnswer> {
    this.authorize(identity, buildId);
    const platform = parsePlatform(platformInput);
    const project = await this.placementProject(identity, buildId, platform);
    const result = await this.options.table.acquire({
      buildId,
      project,
      platform,
      nowMs: this.now(),
      spillAfterMs: this.options.spillAfterMs,
      allocationLeaseMs: this.options.buildLeaseMs,
    });
    const m = this.options.metrics;
    if (result.state === 'active') {
      if (result.placedNow) {
        const kind = result.warm ? 'warm' : result.spilled ? 'spill' : 'pool';
        m.placements.inc({ platform, kind });
        m.affinity.inc({ platform, result: result.warm ? 'hit' : 'miss' });
        if (result.spilled) m.spills.inc({ platform });
        m.queueWaitSeconds.observe({ platform }, result.waitedMs / 1000);
        this.options.log.info('build placed', { buildId, project: identity.project, platform, agentId: result.agentId, kind, waitedMs: result.waitedMs });
      }
      return { state: 'active', platform, builder: { agentId: result.agentId }, warm: result.warm, spilled: result.spilled, waitedMs: result.waitedMs };
    }
    if (result.state === 'pending') {
      m.pending.inc({ platform, reason: result.reason });
      if (result.reason === 'no-builder' && !this.options.canProvision(platform)) await this.refuseIfNoBuilder(buildId, platform);
      return {
        state: 'pending',
        platform,
        reason: result.reason,
        message: `${PENDING_MESSAGE[result.reason]}; waited ${Math.round(result.waitedMs / 1000)} s`,
        retryAfterMs: result.reason === 'busy' ? 500 : 2_000,
        waitedMs: result.waitedMs,
      };
    }
    return { state: result.state, platform, error: endError(result.state, result.reason, buildId) };
  }

  async heartbeat(identity: ClientIdentity, buildId: string): Promise<BuildStatus> {
    this.authorize(identity, buildId);
    const nowMs = this.now();
    const records = await Promise.all(
      Platforms.map((p) => this.options.table.heartbeatAllocation(buildId, p, nowMs, this.options.buildLeaseMs)),
    );
    const status = this.status(identity, buildId, records);
    // Renew the token while the build lives, so builds can outlast one token's life.
    const remainingMs = identity.expiresAt.getTime() - nowMs;
    if (remainingMs < (this.options.buildTokenTtlSec * 1000) / 2 && status.allocations.some((a) => a.state === 'active' || a.state === 'pending')) {
      status.token = await this.options.issuer.issueBuildToken({
        project: identity.project,
        subject: identity.subject,
        buildId,
        ttlSec: this.options.buildTokenTtlSec,
        parentTokenId: identity.parentTokenId,
        untrusted: identity.untrusted,
      });
      status.tokenExpiresAt = new Date(nowMs + this.options.buildTokenTtlSec * 1000).toISOString();
    }
    return status;
  }

  async get(identity: ClientIdentity, buildId: string): Promise<BuildStatus> {
    if (identity.buildId !== undefined) {
      this.authorize(identity, buildId);
    } else if (!identity.scopes.includes('read') && !identity.scopes.includes('build')) {
      throw new GatewayError('FORBIDDEN', `token scopes are '${identity.scopes.join(' ')}', expected 'read' or 'build' to read builds`);
    }
    const records = await Promise.all(Platforms.map((p) => this.options.table.getAllocation(buildId, p)));
    if (identity.buildId === undefined) {
      const mine = (r: AllocationRecord | undefined): boolean =>
        r === undefined || r.project === identity.project || r.project === ephemeralProjectFor(identity.project, buildId);
      // Another project's build looks exactly like no build at all.
      if (!records.every(mine) || records.every((r) => r === undefined)) throw new GatewayError('NOT_FOUND', `no build ${buildId} in project '${identity.project}'`);
    }
    return this.status(identity, buildId, records);
  }

  /** Ends every allocation of the build; idempotent. */
  async end(identity: ClientIdentity, buildId: string, state: 'finished' | 'cancelled', reason: string): Promise<BuildStatus> {
    this.authorize(identity, buildId);
    const nowMs = this.now();
    const records = await Promise.all(Platforms.map((p) => this.options.table.endAllocation(buildId, p, state, reason, nowMs)));
    this.options.log.info(`build ${state}`, { buildId, project: identity.project });
    return this.status(identity, buildId, records);
  }

  /**
   * The builder a tunnel stream of this build goes to. Throws a clear error when the build has
   * no live builder for the platform.
   */
  async builderFor(identity: ClientIdentity, platform: Platform): Promise<{ agentId: string; buildId: string }> {
    const buildId = identity.buildId;
    if (buildId === undefined) {
      throw new GatewayError(
        'FORBIDDEN',
        `tunnels need a build token; this is a project token for '${identity.project}'. Create a build (POST /v1/builds) and acquire a builder first`,
      );
    }
    const allocation = await this.options.table.getAllocation(buildId, platform);
    if (allocation === undefined) {
      throw new GatewayError('NO_CAPACITY', `build ${buildId} has no builder for ${platform}: acquire one first (POST /v1/builds/${buildId}/acquire)`);
    }
    if (allocation.project !== identity.project && allocation.project !== ephemeralProjectFor(identity.project, buildId)) {
      throw new GatewayError('FORBIDDEN', `build ${buildId} belongs to another project`);
    }
    switch (allocation.state) {
      case 'active':
        return { agentId: allocation.agentId!, buildId };
      case 'pending':
        throw new GatewayError('NO_CAPACITY', `build ${buildId} is still waiting for a ${platform} builder`);
      default: {
        const error = endError(allocation.state, allocation.reason, buildId);
        throw new GatewayError(error.code as 'AGENT_LOST' | 'BUILD_ENDED', error.message);
      }
    }
  }

  // With a fleet that cannot launch, a platform with no live builder at all will never get one:
  // say so now rather than let the client wait out its timeout.
  private async refuseIfNoBuilder(buildId: string, platform: Platform): Promise<void> {
    const nowMs = this.now();
    const builders = await this.options.table.listBuilders(platform);
    const live = builders.filter((b) => b.leaseExpiresAtMs > nowMs && b.gatewayIds.length > 0 && !b.draining);
    if (live.length > 0) return;
    const message = `no ${platform} builder is connected, and this gateway's fleet cannot launch one`;
    await this.options.table.endAllocation(buildId, platform, 'failed', message, nowMs);
    throw new GatewayError('NO_AGENT', message);
  }

  private authorize(identity: ClientIdentity, buildId: string): void {
    if (identity.buildId === undefined) {
      throw new GatewayError('FORBIDDEN', `a project token cannot act on build ${buildId}; use the build token returned when it was created`);
    }
    if (identity.buildId !== buildId) {
      throw new GatewayError('FORBIDDEN', `the build token is for build ${identity.buildId}, not ${buildId}`);
    }
  }

  private status(identity: ClientIdentity, buildId: string, records: Array<AllocationRecord | undefined>): BuildStatus {
    const allocations = records
      .filter((r): r is AllocationRecord => r !== undefined)
      .map((r) => ({ platform: r.platform, state: r.state, agentId: r.agentId, reason: r.reason }));
    return { buildId, project: identity.project, allocations };
  }
}

function endError(state: string, reason: string | undefined, buildId: string): { code: string; message: string } {
  if (state === 'failed') return { code: 'AGENT_LOST', message: reason ?? `build ${buildId} lost its builder` };
  if (state === 'expired') return { code: 'BUILD_ENDED', message: `build ${buildId} expired: ${reason ?? 'its heartbeats stopped'}` };
  return { code: 'BUILD_ENDED', message: `build ${buildId} is ${state}${reason ? `: ${reason}` : ''}` };
}

function parsePlatform(value: unknown): Platform {
  if (typeof value !== 'string' || !isPlatform(value)) {
    throw new GatewayError('UNKNOWN_PLATFORM', `platform is ${JSON.stringify(value)?.slice(0, 64)}; expected one of ${Platforms.join(', ')}`);
  }
  return value;
}

function parsePlatforms(value: unknown): Platform[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new GatewayError('BAD_REQUEST', `platforms must be a non-empty array of ${Platforms.join(', ')}; got ${JSON.stringify(value)?.slice(0, 64)}`);
  }
  const bad = value.filter((v) => typeof v !== 'string' || !isPlatform(v));
  if (bad.length > 0) {
    throw new GatewayError('UNKNOWN_PLATFORM', `platforms ${JSON.stringify(bad).slice(0, 128)} are not served; expected ${Platforms.join(', ')}`);
  }
  return [...new Set(value as Platform[])];
}
