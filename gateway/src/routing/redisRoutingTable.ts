import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Cluster, Redis } from 'ioredis';
import type { Platform } from '@slipway/proto';
import { GatewayError } from '../gatewayError.js';
import type {
  AcquireResult,
  AcquireRequest,
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

// The routing table shared by gateway replicas. Every change that touches more than one key is
// one Lua script (./lua/<name>-<numKeys>.lua), so the consistency rules of routingTable.ts hold
// whatever the interleaving of replicas. Key layout, with T = <prefix>{<platform>}:
//   T builder:<id>          hash   the builder record          T builder:<id>:links   hash gateway -> link expiry
//   T builder:<id>:allocs   set    its active allocations      T binding:<id>         hash project, instanceId
//   T project:<p>           set    builders bound to p         T pool:idle            zset unbound idle builder -> idle since
//   T leases                zset   builder -> lease expiry     T alloc:<build>        hash the allocation (TTL once ended)
//   T allocs:open           zset   build -> deadline           T demand               hash project -> JSON
//   T epoch                 counter of builder incarnations
// The pool is ordered by the time each builder has been idle since (its lastUsedAt), so acquire
// takes the one idle longest from the head instead of reading every builder. It is named
// pool:idle because earlier versions kept a set under `pool`: a sorted-set command on that key
// would fail, and the entries come back on their own with the next renewal of each builder.
// and C = <prefix>{control}: for replicas and leadership. One hash tag per platform puts all
// that placement touches in one Redis Cluster slot, so a script may follow ids it reads (a
// project's builders, a builder's allocations) to keys it did not declare.


const POOL = 'pool:idle';

export interface RedisRoutingTableOptions {
  /** A connected (or connecting) ioredis client or cluster client. The table owns it: close() quits it. */
  client: Redis | Cluster;
  /** Prepended to every key, e.g. "slipway:". Must not contain '{' or '}': the hash tags are the table's. */
  keyPrefix: string;
  /** How long an ended allocation stays readable. */
  endedAllocationRetentionMs?: number;
}

interface LuaScript {
  name: string;
  numberOfKeys: number;
  lua: string;
}

const LUA_DIR = new URL('./lua/', import.meta.url);
const SCRIPT_FILE = /^([A-Za-z]+)-(\d+)\.lua$/;
const INCLUDE_LINE = /^--- @include "([A-Za-z0-9/_-]+)"$/gm;
// Custom commands live on the client object; the prefix keeps them clear of ioredis's own.
const COMMAND_PREFIX = 'slipwayRouting_';

let scriptCache: LuaScript[] | undefined;

function loadScripts(): LuaScript[] {
  if (scriptCache) return scriptCache;
  const scripts: LuaScript[] = [];
  for (const file of readdirSync(fileURLToPath(LUA_DIR)).sort()) {
    const m = SCRIPT_FILE.exec(file);
    if (!m) continue;
    const source = readFileSync(new URL(file, LUA_DIR), 'utf8');
    const lua = source.replace(INCLUDE_LINE, (_, include: string) => readFileSync(new URL(`${include}.lua`, LUA_DIR), 'utf8'));
    scripts.push({ name: m[1] as string, numberOfKeys: Number(m[2]), lua });
  }
  scriptCache = scripts;
  return scripts;
}

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;

// Redis answers these while it cannot serve (failover, loading, cluster not formed): the table
// is unavailable, not broken.
const UNAVAILABLE_REPLY = /^(CLUSTERDOWN|LOADING|MASTERDOWN|TRYAGAIN|READONLY|BUSY|NOREPLICAS)\b/;

export class RedisRoutingTable implements RoutingTable {
  private readonly client: Redis | Cluster;
  private readonly prefix: string;
  private readonly retentionMs: number;
  private closed: Promise<void> | undefined;

  constructor(opts: RedisRoutingTableOptions) {
    if (/[{}]/.test(opts.keyPrefix)) {
      throw new GatewayError('CONFIG_INVALID', `routing table key prefix must not contain '{' or '}' (the table sets its own hash tags), got ${JSON.stringify(opts.keyPrefix)}`);
    }
    this.client = opts.client;
    this.prefix = opts.keyPrefix;
    this.retentionMs = opts.endedAllocationRetentionMs ?? DEFAULT_ENDED_ALLOCATION_RETENTION_MS;
    for (const s of loadScripts()) {
      this.client.defineCommand(COMMAND_PREFIX + s.name, { lua: s.lua, numberOfKeys: s.numberOfKeys });
    }
  }

  // Builders -----------------------------------------------------------------------------

  async registerBuilder(reg: BuilderRegistration): Promise<BuilderLease> {
    const T = this.base(reg.platform);
    const id = reg.agentId;
    const raw = await this.script(
      'registerBuilder',
      `registerBuilder ${id} (${reg.platform})`,
      [T + `builder:${id}`, T + `builder:${id}:links`, T + `binding:${id}`, T + 'leases', T + POOL, T + 'epoch'],
      [T, reg.nowMs, this.retentionMs, id, reg.platform, reg.fleet, reg.capacity, reg.instanceId ?? '', reg.gatewayId, reg.leaseMs],
    );
    const r = parseJson(raw) as { epoch?: number; project?: string; forbidden?: string };
    if (r.forbidden !== undefined) {
      throw new GatewayError(
        'FORBIDDEN',
        `builder ${id} (${reg.platform}) belongs to instance ${r.forbidden}; a registration from ${reg.instanceId ?? 'no instance'} cannot take it`,
      );
    }
    return { agentId: id, platform: reg.platform, epoch: Number(r.epoch), project: r.project };
  }

  async renewBuilder(r: BuilderRenewal): Promise<boolean> {
    const T = this.base(r.platform);
    const id = r.agentId;
    const ok = await this.script(
      'renewBuilder',
      `renewBuilder ${id} (${r.platform})`,
      [T + `builder:${id}`, T + `builder:${id}:links`, T + 'leases', T + POOL],
      [T, r.nowMs, id, r.gatewayId, r.epoch, r.leaseMs, r.draining ? '1' : '0'],
    );
    return Number(ok) === 1;
  }

  async unlinkBuilder(agentId: string, platform: Platform, gatewayId: string, epoch: number): Promise<void> {
    const T = this.base(platform);
    await this.script(
      'unlinkBuilder',
      `unlinkBuilder ${agentId} (${platform})`,
      [T + `builder:${agentId}`, T + `builder:${agentId}:links`],
      [gatewayId, epoch],
    );
  }

  async getBuilder(agentId: string, platform: Platform): Promise<BuilderRecord | undefined> {
    return (await this.readBuilders(platform, [agentId]))[0];
  }

  async listBuilders(platform: Platform): Promise<BuilderRecord[]> {
    return this.readBuilders(platform, []);
  }

  async bindBuilder(agentId: string, platform: Platform, project: string): Promise<boolean> {
    const T = this.base(platform);
    const ok = await this.script(
      'bindBuilder',
      `bindBuilder ${agentId} (${platform}) to ${project}`,
      [T + `binding:${agentId}`, T + `builder:${agentId}`, T + POOL, T + `project:${project}`],
      [agentId, project],
    );
    return Number(ok) === 1;
  }

  async releaseBinding(agentId: string, platform: Platform): Promise<void> {
    const T = this.base(platform);
    await this.script(
      'releaseBinding',
      `releaseBinding ${agentId} (${platform})`,
      [T + `binding:${agentId}`, T + `builder:${agentId}`, T + POOL],
      [T, agentId],
    );
  }

  async boundBuilders(project: string, platform: Platform): Promise<string[]> {
    const ids = await this.call(`boundBuilders ${project} (${platform})`, () =>
      this.client.smembers(this.base(platform) + `project:${project}`),
    );
    return ids.sort(byId);
  }

  async drainIfIdle(agentId: string, platform: Platform, epoch: number): Promise<boolean> {
    const T = this.base(platform);
    const ok = await this.script('drainIfIdle', `drainIfIdle ${agentId} (${platform})`, [T + `builder:${agentId}`, T + POOL], [epoch, agentId]);
    return Number(ok) === 1;
  }

  // Allocations --------------------------------------------------------------------------

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const T = this.base(req.platform);
    const raw = await this.script(
      'acquire',
      `acquire ${req.buildId} (${req.platform})`,
      [T + `alloc:${req.buildId}`, T + 'allocs:open', T + `project:${req.project}`, T + POOL, T + 'demand'],
      [T, req.nowMs, this.retentionMs, req.buildId, req.project, req.platform, req.spillAfterMs, req.allocationLeaseMs, POOL_SCAN_LIMIT],
    );
    const r = parseJson(raw) as Record<string, unknown>;
    if (typeof r.forbidden === 'string') {
      throw new GatewayError('FORBIDDEN', `build ${req.buildId} belongs to project ${r.forbidden}, not ${req.project}`);
    }
    switch (r.state) {
      case 'active':
        return {
          state: 'active',
          agentId: String(r.agentId),
          builderEpoch: Number(r.epoch),
          warm: r.warm === true,
          spilled: r.spilled === true,
          waitedMs: Number(r.waitedMs),
          placedNow: r.placedNow === true,
        };
      case 'pending':
        return { state: 'pending', reason: r.reason as PendingReason, waitedMs: Number(r.waitedMs) };
      default:
        return { state: r.state as AllocationEndState, reason: String(r.reason) };
    }
  }

  async heartbeatAllocation(buildId: string, platform: Platform, nowMs: number, allocationLeaseMs: number): Promise<AllocationRecord | undefined> {
    const T = this.base(platform);
    const raw = await this.script(
      'heartbeatAllocation',
      `heartbeatAllocation ${buildId} (${platform})`,
      [T + `alloc:${buildId}`, T + 'allocs:open'],
      [T, nowMs, this.retentionMs, buildId, allocationLeaseMs],
    );
    return raw === null ? undefined : allocationRecord(parseJson(raw) as Record<string, string>);
  }

  async endAllocation(buildId: string, platform: Platform, state: AllocationEndState, reason: string, nowMs: number): Promise<AllocationRecord | undefined> {
    const T = this.base(platform);
    const raw = await this.script(
      'endAllocation',
      `endAllocation ${buildId} (${platform})`,
      [T + `alloc:${buildId}`, T + 'allocs:open'],
      [T, nowMs, this.retentionMs, buildId, state, reason],
    );
    return raw === null ? undefined : allocationRecord(parseJson(raw) as Record<string, string>);
  }

  async getAllocation(buildId: string, platform: Platform): Promise<AllocationRecord | undefined> {
    const h = await this.call(`getAllocation ${buildId} (${platform})`, () => this.client.hgetall(this.base(platform) + `alloc:${buildId}`));
    return Object.keys(h).length === 0 ? undefined : allocationRecord(h);
  }

  async allocationsOn(agentId: string, platform: Platform): Promise<string[]> {
    const ids = await this.call(`allocationsOn ${agentId} (${platform})`, () =>
      this.client.smembers(this.base(platform) + `builder:${agentId}:allocs`),
    );
    return ids.sort(byId);
  }

  async reap(platform: Platform, nowMs: number): Promise<ReapResult> {
    const T = this.base(platform);
    const raw = await this.script('reap', `reap (${platform})`, [T + 'leases', T + 'allocs:open', T + 'demand'], [T, nowMs, this.retentionMs]);
    const r = parseJson(raw) as Record<string, unknown>;
    return {
      expiredBuilders: strings(r.expiredBuilders),
      failedAllocations: strings(r.failedAllocations),
      expiredAllocations: strings(r.expiredAllocations),
    };
  }

  // Fleet --------------------------------------------------------------------------------

  async listDemands(platform: Platform): Promise<Demand[]> {
    const h = await this.call(`listDemands (${platform})`, () => this.client.hgetall(this.base(platform) + 'demand'));
    return Object.entries(h)
      .map(([project, json]) => {
        const d = parseJson(json) as Record<string, unknown>;
        return { project, platform, sinceMs: Number(d.sinceMs), boundAgentIds: strings(d.boundAgentIds) };
      })
      .sort((x, y) => x.sinceMs - y.sinceMs || byId(x.project, y.project));
  }

  // Replicas and leadership --------------------------------------------------------------

  async announceReplica(gatewayId: string, internalUrl: string, nowMs: number, ttlMs: number): Promise<void> {
    const C = this.control();
    await this.script('announceReplica', `announceReplica ${gatewayId}`, [C + 'replicas', C + 'replicas:url'], [gatewayId, internalUrl, nowMs + ttlMs]);
  }

  async listReplicas(nowMs: number): Promise<Map<string, string>> {
    const C = this.control();
    const flat = strings(await this.script('listReplicas', 'listReplicas', [C + 'replicas', C + 'replicas:url'], [nowMs]));
    const pairs: [string, string][] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i] as string, flat[i + 1] as string]);
    return new Map(pairs.sort(([x], [y]) => byId(x, y)));
  }

  async acquireLeadership(name: string, holderId: string, nowMs: number, ttlMs: number): Promise<LeaderLease | undefined> {
    const C = this.control();
    const r = await this.script(
      'acquireLeadership',
      `acquireLeadership ${name} for ${holderId}`,
      [C + `leader:${name}`, C + `leader:${name}:token`],
      [holderId, nowMs, ttlMs],
    );
    if (r === null) return undefined;
    const [holder, token, expiresAt] = strings(r);
    return { holderId: String(holder), token: Number(token), expiresAtMs: Number(expiresAt) };
  }

  async checkFence(name: string, token: number, nowMs: number): Promise<boolean> {
    const [current, expiresAt] = await this.call(`checkFence ${name}`, () =>
      this.client.hmget(this.control() + `leader:${name}`, 'token', 'expiresAt'),
    );
    return current !== null && Number(current) === token && Number(expiresAt) > nowMs;
  }

  async resignLeadership(name: string, token: number): Promise<void> {
    await this.script('resignLeadership', `resignLeadership ${name}`, [this.control() + `leader:${name}`], [token]);
  }

  close(): Promise<void> {
    this.closed ??= this.client.quit().then(
      () => undefined,
      () => {
        // Already closed or never connected: either way nothing is left to release.
      },
    );
    return this.closed;
  }

  // Internals ----------------------------------------------------------------------------

  private base(platform: Platform): string {
    return `${this.prefix}{${platform}}:`;
  }

  private control(): string {
    return `${this.prefix}{control}:`;
  }

  private async readBuilders(platform: Platform, ids: string[]): Promise<BuilderRecord[]> {
    const T = this.base(platform);
    const what = ids.length === 0 ? `listBuilders (${platform})` : `getBuilder ${ids.join(',')} (${platform})`;
    const raw = await this.script('readBuilders', what, [T + 'leases'], [T, ...ids]);
    return list(parseJson(raw)).map((entry) => {
      const e = entry as { h: Record<string, string>; links: unknown; project?: string };
      const h = e.h;
      return {
        agentId: String(h.agentId),
        platform,
        fleet: String(h.fleet),
        capacity: Number(h.capacity),
        instanceId: h.instanceId,
        epoch: Number(h.epoch),
        project: e.project,
        active: Number(h.active),
        draining: h.draining === '1',
        leaseExpiresAtMs: Number(h.lease),
        gatewayIds: strings(e.links).sort(byId),
        registeredAtMs: Number(h.registeredAt),
        lastUsedAtMs: Number(h.lastUsedAt),
      };
    });
  }

  private script(name: string, what: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    const fn = (this.client as unknown as Record<string, ScriptCall | undefined>)[COMMAND_PREFIX + name];
    if (fn === undefined) throw new GatewayError('INTERNAL', `routing script ${name} is not defined on the redis client`);
    return this.call(what, () => fn.call(this.client, ...keys, ...args.map(String)));
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw routingError(what, err);
    }
  }
}

function routingError(what: string, err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const isReply = err instanceof Error && err.name === 'ReplyError';
  if (isReply && !UNAVAILABLE_REPLY.test(message)) {
    return new GatewayError('INTERNAL', `routing table ${what}: redis refused the command: ${message}`, { cause: err });
  }
  return new GatewayError('ROUTING_UNAVAILABLE', `routing table ${what}: redis unavailable: ${message}`, { cause: err });
}

function parseJson(raw: unknown): unknown {
  if (typeof raw !== 'string') throw new GatewayError('INTERNAL', `routing script answered ${typeof raw}, expected a JSON string`);
  return JSON.parse(raw) as unknown;
}

// Lua's cjson cannot tell an empty array from an empty object and writes {}.
function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function strings(v: unknown): string[] {
  return list(v).map(String);
}

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function num(v: string | undefined): number | undefined {
  return v === undefined ? undefined : Number(v);
}

function allocationRecord(h: Record<string, string>): AllocationRecord {
  return {
    buildId: String(h.buildId),
    project: String(h.project),
    platform: h.platform as Platform,
    state: h.state as AllocationState,
    agentId: h.agentId,
    builderEpoch: num(h.epoch),
    reason: h.reason,
    createdAtMs: Number(h.createdAt),
    activeAtMs: num(h.activeAt),
    heartbeatDeadlineMs: num(h.deadline),
    endedAtMs: num(h.endedAt),
  };
}
