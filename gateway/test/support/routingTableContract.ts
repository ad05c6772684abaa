// The behaviour every RoutingTable implementation owes the gateway, as node:test tests. One call
// registers the whole suite for one implementation; the factory may hand out several tables that
// share one backing store (Redis: one client per gateway replica), and the tests spread their
// calls over all of them so that what one replica writes, another must see.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Platform } from '@slipway/proto';
import { GatewayError } from '../../src/gatewayError.js';
import {
  POOL_SCAN_LIMIT,
  type AcquireRequest,
  type AcquireResult,
  type AllocationRecord,
  type BuilderRegistration,
  type RoutingTable,
} from '../../src/routing/routingTable.js';

export interface RoutingTableFixture {
  /** At least one table; all share one backing store. */
  tables: RoutingTable[];
  cleanup(): Promise<void>;
}

const AMD: Platform = 'linux/amd64';
const ARM: Platform = 'linux/arm64';
// Far from zero so implementations that store times as text must keep 13 digits intact.
const T0 = 1_700_000_000_000;
const LEASE_MS = 10_000;
const SPILL_MS = 5_000;
const ALLOC_LEASE_MS = 30_000;

interface Ctx {
  tables: RoutingTable[];
  /** The table of replica i (wrapping around): several replicas, one store. */
  r(i: number): RoutingTable;
  /** Registers a builder through replica `replica` (gateway id `gw-<replica>`). */
  register(agentId: string, opts?: Partial<BuilderRegistration> & { replica?: number }): Promise<number>;
}

function registration(agentId: string, opts: Partial<BuilderRegistration> & { replica?: number } = {}): BuilderRegistration {
  const { replica = 0, ...rest } = opts;
  return {
    agentId,
    platform: AMD,
    fleet: 'local',
    capacity: 1,
    gatewayId: `gw-${replica}`,
    nowMs: T0,
    leaseMs: LEASE_MS,
    ...rest,
  };
}

function acquireReq(buildId: string, project: string, nowMs = T0, extra: Partial<AcquireRequest> = {}): AcquireRequest {
  return { buildId, project, platform: AMD, nowMs, spillAfterMs: SPILL_MS, allocationLeaseMs: ALLOC_LEASE_MS, ...extra };
}

function assertActive(r: AcquireResult, what: string): Extract<AcquireResult, { state: 'active' }> {
  assert.equal(r.state, 'active', `${what}: expected active, got ${JSON.stringify(r)}`);
  return r as Extract<AcquireResult, { state: 'active' }>;
}

function assertPending(r: AcquireResult, reason: string, what: string): void {
  assert.deepEqual(
    r.state === 'pending' ? { state: r.state, reason: r.reason } : r,
    { state: 'pending', reason },
    `${what}: expected pending (${reason})`,
  );
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

export function routingTableContract(name: string, factory: () => Promise<RoutingTableFixture>): void {
  async function withTables(fn: (ctx: Ctx) => Promise<void>): Promise<void> {
    const fixture = await factory();
    assert.ok(fixture.tables.length > 0, 'the factory must give at least one table');
    const r = (i: number): RoutingTable => fixture.tables[i % fixture.tables.length] as RoutingTable;
    const ctx: Ctx = {
      tables: fixture.tables,
      r,
      async register(agentId, opts = {}) {
        const lease = await r(opts.replica ?? 0).registerBuilder(registration(agentId, opts));
        return lease.epoch;
      },
    };
    try {
      await fn(ctx);
    } finally {
      await fixture.cleanup();
    }
  }

  describe(`RoutingTable contract: ${name}`, () => {
    describe('builders', () => {
      it('registers a builder; another replica adds its link and keeps the epoch', () =>
        withTables(async ({ r, register }) => {
          const lease = await r(0).registerBuilder(registration('b1', { capacity: 2, instanceId: 'i-1' }));
          assert.equal(lease.agentId, 'b1');
          assert.equal(lease.platform, AMD);
          assert.equal(lease.project, undefined);
          const again = await register('b1', { replica: 1, capacity: 3, instanceId: 'i-1', nowMs: T0 + 1_000 });
          assert.equal(again, lease.epoch, 'a second link keeps the epoch');
          const rec = await r(2).getBuilder('b1', AMD);
          assert.ok(rec);
          assert.equal(rec.epoch, lease.epoch);
          assert.equal(rec.capacity, 3, 'capacity refreshed by the newer registration');
          assert.equal(rec.instanceId, 'i-1');
          assert.equal(rec.fleet, 'local');
          assert.equal(rec.active, 0);
          assert.equal(rec.draining, false);
          assert.equal(rec.project, undefined);
          assert.deepEqual(rec.gatewayIds, ['gw-0', 'gw-1']);
          assert.equal(rec.leaseExpiresAtMs, T0 + 1_000 + LEASE_MS);
          assert.equal(rec.registeredAtMs, T0);
          assert.equal(await r(1).getBuilder('b1', ARM), undefined, 'platforms are separate');
          assert.deepEqual((await r(1).listBuilders(AMD)).map((b) => b.agentId), ['b1']);
          assert.deepEqual(await r(1).listBuilders(ARM), []);
        }));

      it('renews with the current epoch, refuses a wrong one, and unlink leaves the record', () =>
        withTables(async ({ r, register }) => {
          const epoch = await register('b1');
          await register('b1', { replica: 1 });
          const renewal = { agentId: 'b1', platform: AMD, gatewayId: 'gw-1', nowMs: T0 + 5_000, leaseMs: LEASE_MS, draining: false };
          assert.equal(await r(1).renewBuilder({ ...renewal, epoch }), true);
          assert.equal((await r(0).getBuilder('b1', AMD))?.leaseExpiresAtMs, T0 + 5_000 + LEASE_MS);
          assert.equal(await r(1).renewBuilder({ ...renewal, epoch: epoch + 1000 }), false);
          await r(0).unlinkBuilder('b1', AMD, 'gw-0', epoch);
          const rec = await r(2).getBuilder('b1', AMD);
          assert.deepEqual(rec?.gatewayIds, ['gw-1']);
          await r(1).unlinkBuilder('b1', AMD, 'gw-1', epoch + 1000);
          assert.deepEqual((await r(2).getBuilder('b1', AMD))?.gatewayIds, ['gw-1'], 'unlink with a stale epoch is ignored');
          await r(1).unlinkBuilder('b1', AMD, 'gw-1', epoch);
          const unlinked = await r(2).getBuilder('b1', AMD);
          assert.ok(unlinked, 'the record stays until its lease passes');
          assert.deepEqual(unlinked.gatewayIds, []);
        }));

      it('a builder that expired and registered again gets a new epoch; the old epoch is refused', () =>
        withTables(async ({ r, register }) => {
          const first = await register('b1');
          const later = T0 + LEASE_MS + 1;
          assert.equal(
            await r(1).renewBuilder({ agentId: 'b1', platform: AMD, gatewayId: 'gw-1', epoch: first, nowMs: later, leaseMs: LEASE_MS, draining: false }),
            false,
            'a renewal after the lease passed is refused: it must register again',
          );
          const second = await register('b1', { replica: 1, nowMs: later });
          assert.notEqual(second, first);
          const renewal = { agentId: 'b1', platform: AMD, gatewayId: 'gw-0', nowMs: later + 1, leaseMs: LEASE_MS, draining: false };
          assert.equal(await r(0).renewBuilder({ ...renewal, epoch: first }), false, 'stale epoch');
          assert.equal(await r(0).renewBuilder({ ...renewal, epoch: second }), true);
          const rec = await r(2).getBuilder('b1', AMD);
          assert.equal(rec?.epoch, second);
          assert.equal(rec?.registeredAtMs, later);
        }));

      it('refuses a registration from another instance than the one the builder belongs to', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { instanceId: 'i-1' });
          await rejectsWith(r(1).registerBuilder(registration('b1', { instanceId: 'i-2', gatewayId: 'gw-1' })), 'FORBIDDEN');
          assert.equal((await r(0).getBuilder('b1', AMD))?.instanceId, 'i-1');
          assert.ok(await r(0).bindBuilder('b1', AMD, 'alpha'));
          // Long after the lease: the binding (its cache) still belongs to instance i-1.
          await rejectsWith(r(2).registerBuilder(registration('b1', { instanceId: 'i-2', nowMs: T0 + 10 * LEASE_MS })), 'FORBIDDEN');
          const lease = await r(2).registerBuilder(registration('b1', { instanceId: 'i-1', nowMs: T0 + 10 * LEASE_MS }));
          assert.equal(lease.project, 'alpha', 'the binding comes back with the builder');
        }));

      it('bindBuilder is a compare-and-set; releaseBinding returns a live builder to the pool', () =>
        withTables(async ({ r, register }) => {
          assert.equal(await r(0).bindBuilder('ghost', AMD, 'alpha'), true, 'a builder that never connected can be bound');
          assert.deepEqual(await r(1).boundBuilders('alpha', AMD), ['ghost']);
          await register('b1');
          assert.equal(await r(0).bindBuilder('b1', AMD, 'alpha'), true);
          assert.equal(await r(1).bindBuilder('b1', AMD, 'alpha'), true, 'same project again');
          assert.equal(await r(2).bindBuilder('b1', AMD, 'beta'), false, 'bound to another project');
          assert.equal((await r(2).getBuilder('b1', AMD))?.project, 'alpha');
          assert.deepEqual(await r(2).boundBuilders('alpha', AMD), ['b1', 'ghost']);
          assertPending(await r(0).acquire(acquireReq('beta-1', 'beta')), 'no-builder', 'beta while b1 is bound to alpha');
          await r(1).releaseBinding('b1', AMD);
          assert.deepEqual(await r(2).boundBuilders('alpha', AMD), ['ghost']);
          assert.equal((await r(2).getBuilder('b1', AMD))?.project, undefined);
          const placed = assertActive(await r(2).acquire(acquireReq('beta-1', 'beta', T0 + 1)), 'beta after release');
          assert.equal(placed.agentId, 'b1');
          assert.equal(placed.warm, false);
          assert.equal((await r(0).getBuilder('b1', AMD))?.project, 'beta');
          assert.deepEqual(await r(0).boundBuilders('beta', AMD), ['b1']);
        }));

      it('drainIfIdle marks only an idle builder of the given epoch; a draining builder is not placeable', () =>
        withTables(async ({ r, register }) => {
          const epoch = await register('b1');
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'first build');
          assert.equal(await r(1).drainIfIdle('b1', AMD, epoch), false, 'busy');
          await r(1).endAllocation('a-1', AMD, 'finished', '', T0 + 1);
          assert.equal(await r(2).drainIfIdle('b1', AMD, epoch + 1000), false, 'wrong epoch');
          assert.equal((await r(2).getBuilder('b1', AMD))?.draining, false);
          assert.equal(await r(2).drainIfIdle('b1', AMD, epoch), true);
          assert.equal((await r(0).getBuilder('b1', AMD))?.draining, true);
          assertPending(await r(0).acquire(acquireReq('a-2', 'alpha', T0 + 2)), 'starting', 'its only builder is draining');
          // A renewal that does not know about the drain must not make it placeable again.
          assert.equal(
            await r(1).renewBuilder({ agentId: 'b1', platform: AMD, gatewayId: 'gw-0', epoch, nowMs: T0 + 3, leaseMs: LEASE_MS, draining: false }),
            true,
          );
          assertPending(await r(0).acquire(acquireReq('a-2', 'alpha', T0 + 4)), 'starting', 'still draining');
        }));

      it('a builder that reports draining is not placeable', () =>
        withTables(async ({ r, register }) => {
          const epoch = await register('b1');
          assert.equal(
            await r(1).renewBuilder({ agentId: 'b1', platform: AMD, gatewayId: 'gw-0', epoch, nowMs: T0 + 1, leaseMs: LEASE_MS, draining: true }),
            true,
          );
          assert.equal((await r(2).getBuilder('b1', AMD))?.draining, true);
          assertPending(await r(2).acquire(acquireReq('a-1', 'alpha', T0 + 2)), 'no-builder', 'the pool only has a draining builder');
        }));

      it('a builder no replica holds a link to is not placeable', () =>
        withTables(async ({ r, register }) => {
          const epoch = await register('b1', { replica: 0 });
          await register('b1', { replica: 1 });
          await r(0).unlinkBuilder('b1', AMD, 'gw-0', epoch);
          const placed = assertActive(await r(2).acquire(acquireReq('a-1', 'alpha', T0 + 1)), 'one link left');
          assert.equal(placed.agentId, 'b1');
          await r(2).endAllocation('a-1', AMD, 'finished', '', T0 + 2);
          await r(1).unlinkBuilder('b1', AMD, 'gw-1', epoch);
          assertPending(await r(0).acquire(acquireReq('a-2', 'alpha', T0 + 3)), 'starting', 'bound builder has no link');
          assertPending(await r(0).acquire(acquireReq('b-1', 'beta', T0 + 3)), 'no-builder', 'nothing in the pool');
        }));

      it('only uses builders of the requested platform', () =>
        withTables(async ({ r, register }) => {
          await register('arm-1', { platform: ARM });
          assertPending(await r(1).acquire(acquireReq('a-1', 'alpha')), 'no-builder', 'amd64 build with only an arm64 builder');
          const placed = assertActive(await r(2).acquire(acquireReq('a-1', 'alpha', T0, { platform: ARM })), 'arm64 build');
          assert.equal(placed.agentId, 'arm-1');
          assert.equal((await r(0).getAllocation('a-1', AMD))?.state, 'pending', 'one allocation per (build, platform)');
        }));
    });

    describe('placement', () => {
      it('places a project on a pool builder, then keeps it warm there', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { replica: 0, capacity: 2 });
          await register('b2', { replica: 1, capacity: 2 });
          const first = assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'first');
          assert.equal(first.warm, false);
          assert.equal(first.spilled, false);
          assert.equal(first.placedNow, true);
          assert.equal(first.waitedMs, 0);
          assert.deepEqual(await r(1).boundBuilders('alpha', AMD), [first.agentId]);
          for (let i = 2; i <= 6; i++) {
            const now = T0 + i * 1_000;
            const res = assertActive(await r(i).acquire(acquireReq(`a-${i}`, 'alpha', now)), `build ${i}`);
            assert.equal(res.agentId, first.agentId, 'the warm builder again');
            assert.equal(res.warm, true);
            assert.equal(res.spilled, false);
            assert.equal(res.builderEpoch, first.builderEpoch);
            await r(i + 1).endAllocation(`a-${i}`, AMD, 'finished', '', now + 1);
          }
          const rec = await r(2).getBuilder(first.agentId, AMD);
          assert.equal(rec?.project, 'alpha');
          assert.equal(rec?.active, 1);
          assert.equal(rec?.lastUsedAtMs, T0 + 6_001);
        }));

      it('two projects never share a builder', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { capacity: 4 });
          await register('b2', { capacity: 4, replica: 1 });
          const a = assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'alpha');
          const b = assertActive(await r(1).acquire(acquireReq('b-1', 'beta')), 'beta');
          assert.notEqual(a.agentId, b.agentId);
          assertPending(await r(2).acquire(acquireReq('c-1', 'gamma')), 'no-builder', 'gamma: both builders are bound, with free slots');
          const a2 = assertActive(await r(2).acquire(acquireReq('a-2', 'alpha', T0 + 1)), 'alpha again');
          assert.equal(a2.agentId, a.agentId);
          assert.deepEqual(await r(0).allocationsOn(a.agentId, AMD), ['a-1', 'a-2']);
          assert.deepEqual(await r(0).allocationsOn(b.agentId, AMD), ['b-1']);
        }));

      it('respects capacity: a full project waits as busy', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { capacity: 2 });
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'a-1');
          assertActive(await r(1).acquire(acquireReq('a-2', 'alpha')), 'a-2');
          const third = await r(2).acquire(acquireReq('a-3', 'alpha', T0 + 10));
          assertPending(third, 'busy', 'a-3');
          assert.equal(third.state === 'pending' ? third.waitedMs : -1, 0);
          const rec = await r(0).getBuilder('b1', AMD);
          assert.equal(rec?.active, 2);
          const waited = await r(0).acquire(acquireReq('a-3', 'alpha', T0 + 1_010));
          assertPending(waited, 'busy', 'still full');
          assert.equal(waited.state === 'pending' ? waited.waitedMs : -1, 1_000);
          assert.deepEqual(await r(1).listDemands(AMD), [], 'busy before the spill time asks the fleet for nothing');
          await r(1).endAllocation('a-1', AMD, 'finished', '', T0 + 2_000);
          const placed = assertActive(await r(2).acquire(acquireReq('a-3', 'alpha', T0 + 2_010)), 'a slot freed');
          assert.equal(placed.warm, true);
          assert.equal(placed.waitedMs, 2_000);
        }));

      it('pending reasons: starting when the bound builders are offline, no-builder when the pool is empty', () =>
        withTables(async ({ r, register }) => {
          assertPending(await r(0).acquire(acquireReq('a-1', 'alpha')), 'no-builder', 'empty table');
          const epoch = await register('b1');
          assert.ok(await r(1).bindBuilder('b1', AMD, 'beta'));
          await r(1).unlinkBuilder('b1', AMD, 'gw-0', epoch);
          assertPending(await r(2).acquire(acquireReq('b-1', 'beta', T0 + 1)), 'starting', 'beta: its builder has no link');
          assertPending(await r(2).acquire(acquireReq('b-2', 'beta', T0 + 1 + SPILL_MS)), 'starting', 'beta after the spill time, pool empty');
          assert.ok(await r(0).bindBuilder('stopped', AMD, 'gamma'));
          assertPending(await r(0).acquire(acquireReq('g-1', 'gamma')), 'starting', 'gamma: bound builder never connected');
        }));

      it('spills to a pool builder once a pending allocation waited spillAfterMs', () =>
        withTables(async ({ r, register }) => {
          await register('own', { capacity: 1 });
          assert.ok(await r(0).bindBuilder('own', AMD, 'alpha'));
          await register('pool', { capacity: 1, replica: 1 });
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'a-1');
          assertPending(await r(1).acquire(acquireReq('a-2', 'alpha', T0 + 100)), 'busy', 'a-2 before the spill time');
          assertPending(await r(2).acquire(acquireReq('a-2', 'alpha', T0 + 100 + SPILL_MS - 1)), 'busy', 'a-2 just before');
          const spilled = assertActive(await r(0).acquire(acquireReq('a-2', 'alpha', T0 + 100 + SPILL_MS)), 'a-2 at the spill time');
          assert.equal(spilled.agentId, 'pool');
          assert.equal(spilled.spilled, true);
          assert.equal(spilled.warm, false);
          assert.equal(spilled.waitedMs, SPILL_MS);
          assert.deepEqual(await r(1).boundBuilders('alpha', AMD), ['own', 'pool'], 'the spilled builder is now alpha\'s');
        }));

      it('a spill that finds the pool empty asks the fleet (busy, with a demand)', () =>
        withTables(async ({ r, register }) => {
          await register('own', { capacity: 1 });
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'a-1');
          assertPending(await r(1).acquire(acquireReq('a-2', 'alpha', T0 + 1)), 'busy', 'a-2');
          assert.deepEqual(await r(2).listDemands(AMD), []);
          assertPending(await r(1).acquire(acquireReq('a-2', 'alpha', T0 + 1 + SPILL_MS)), 'busy', 'a-2 wants to spill');
          assert.deepEqual(await r(2).listDemands(AMD), [{ project: 'alpha', platform: AMD, sinceMs: T0 + 1 + SPILL_MS, boundAgentIds: [] }]);
        }));

      it('prefers the pool builder idle longest', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { nowMs: T0 + 300 });
          await register('b2', { nowMs: T0 + 100, replica: 1 });
          await register('b3', { nowMs: T0 + 200, replica: 2 });
          const placed = assertActive(await r(0).acquire(acquireReq('a-1', 'alpha', T0 + 400)), 'alpha');
          assert.equal(placed.agentId, 'b2');
        }));

      it('acquire is idempotent, and refuses a build of another project', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { capacity: 2 });
          const first = assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'first');
          const repeat = assertActive(await r(1).acquire(acquireReq('a-1', 'alpha', T0 + 500)), 'repeat');
          assert.equal(repeat.placedNow, false);
          assert.equal(repeat.agentId, first.agentId);
          assert.equal(repeat.builderEpoch, first.builderEpoch);
          assert.equal(repeat.waitedMs, 0);
          assert.equal((await r(2).getBuilder('b1', AMD))?.active, 1, 'a repeat takes no second slot');
          assert.equal((await r(2).getAllocation('a-1', AMD))?.heartbeatDeadlineMs, T0 + 500 + ALLOC_LEASE_MS, 'a repeat counts as a heartbeat');
          await rejectsWith(r(2).acquire(acquireReq('a-1', 'beta', T0 + 600)), 'FORBIDDEN');
          assertPending(await r(0).acquire(acquireReq('x-1', 'beta')), 'no-builder', 'beta');
          await rejectsWith(r(1).acquire(acquireReq('x-1', 'alpha')), 'FORBIDDEN');
        }));
    });

    describe('pool', () => {
      it('takes the builder idle longest: a used one is idle since its last build ended, ties go to the lower id', () =>
        withTables(async ({ r, register }) => {
          await register('b2', { nowMs: T0 });
          await register('b1', { nowMs: T0, replica: 1 });
          await register('b3', { nowMs: T0 + 50, replica: 2 });
          const a = assertActive(await r(0).acquire(acquireReq('a-1', 'alpha', T0 + 100)), 'alpha');
          assert.equal(a.agentId, 'b1', 'b1 and b2 idle since T0: the lower id');
          await r(1).endAllocation('a-1', AMD, 'finished', '', T0 + 200);
          await r(2).releaseBinding('b1', AMD);
          assert.equal((await r(0).getBuilder('b1', AMD))?.lastUsedAtMs, T0 + 200);
          const order: string[] = [];
          for (const [i, project] of ['gamma', 'delta', 'epsilon'].entries()) {
            order.push(assertActive(await r(i).acquire(acquireReq(`${project}-1`, project, T0 + 300 + i)), project).agentId);
          }
          assert.deepEqual(order, ['b2', 'b3', 'b1'], 'idle since T0, T0 + 50, T0 + 200');
        }));

      it('skips a pool builder whose lease passed, and takes it again once it registers as a new incarnation', () =>
        withTables(async ({ r, register }) => {
          const first = await register('old', { nowMs: T0 });
          const expired = T0 + LEASE_MS;
          assertPending(await r(1).acquire(acquireReq('a-1', 'alpha', expired)), 'no-builder', 'its only pool builder lost its lease');
          assert.deepEqual((await r(2).listDemands(AMD)).map((d) => d.project), ['alpha'], 'the pool is empty: the fleet is asked');
          await register('fresh', { nowMs: expired + 1, leaseMs: 100 * LEASE_MS, replica: 1 });
          const second = await register('old', { nowMs: expired + 2, replica: 2 });
          assert.notEqual(second, first);
          const a = assertActive(await r(0).acquire(acquireReq('a-1', 'alpha', expired + 3)), 'alpha');
          assert.equal(a.agentId, 'fresh', 'idle since its registration, before the new incarnation of old');
          const b = assertActive(await r(1).acquire(acquireReq('b-1', 'beta', expired + 4)), 'beta');
          assert.equal(b.agentId, 'old');
          assert.equal(b.builderEpoch, second);
        }));

      it('skips a pool builder no replica links any more, until a renewal or a registration links it again', () =>
        withTables(async ({ r, register }) => {
          const e1 = await register('b1', { nowMs: T0, replica: 0 });
          const e2 = await register('b2', { nowMs: T0 + 10, replica: 1 });
          await register('b3', { nowMs: T0 + 20, replica: 2 });
          const e4 = await register('b4', { nowMs: T0 + 30, replica: 0 });
          await r(0).unlinkBuilder('b1', AMD, 'gw-0', e1);
          await r(1).unlinkBuilder('b2', AMD, 'gw-1', e2);
          const a = assertActive(await r(2).acquire(acquireReq('a-1', 'alpha', T0 + 100)), 'alpha');
          assert.equal(a.agentId, 'b3', 'b1 and b2 have no link');
          assert.equal(
            await r(0).renewBuilder({ agentId: 'b1', platform: AMD, gatewayId: 'gw-0', epoch: e1, nowMs: T0 + 200, leaseMs: LEASE_MS, draining: false }),
            true,
          );
          assert.equal(await register('b2', { nowMs: T0 + 200, replica: 2 }), e2, 'a link from another replica keeps the epoch');
          const placed: string[] = [];
          for (const [i, project] of ['beta', 'gamma', 'delta'].entries()) {
            placed.push(assertActive(await r(i).acquire(acquireReq(`${project}-1`, project, T0 + 300 + i)), project).agentId);
          }
          assert.deepEqual(placed, ['b1', 'b2', 'b4'], 'back in the pool in idle order');

          await r(0).releaseBinding('b4', AMD);
          await r(1).endAllocation('delta-1', AMD, 'finished', '', T0 + 400);
          await r(0).unlinkBuilder('b4', AMD, 'gw-0', e4);
          await r(1).reap(AMD, T0 + 500);
          assertPending(await r(2).acquire(acquireReq('e-1', 'epsilon', T0 + 600)), 'no-builder', 'b4 has no link');
          assert.equal(
            await r(0).renewBuilder({ agentId: 'b4', platform: AMD, gatewayId: 'gw-0', epoch: e4, nowMs: T0 + 700, leaseMs: LEASE_MS, draining: false }),
            true,
          );
          assert.equal(assertActive(await r(1).acquire(acquireReq('e-1', 'epsilon', T0 + 800)), 'epsilon').agentId, 'b4');
        }));

      it('a builder released while it runs a build joins the pool when the build ends', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { capacity: 2 });
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'a-1');
          await r(1).releaseBinding('b1', AMD);
          assert.equal(await r(2).bindBuilder('b1', AMD, 'gamma'), false, 'still runs a build of alpha');
          assertPending(await r(2).acquire(acquireReq('b-1', 'beta', T0 + 10)), 'no-builder', 'b1 still runs alpha');
          assert.deepEqual((await r(0).listDemands(AMD)).map((d) => d.project), ['beta']);
          await r(0).endAllocation('a-1', AMD, 'finished', '', T0 + 50);
          const b = assertActive(await r(1).acquire(acquireReq('b-1', 'beta', T0 + 60)), 'beta');
          assert.equal(b.agentId, 'b1');
          assert.equal(b.warm, false);
          assert.deepEqual(await r(2).boundBuilders('beta', AMD), ['b1']);
        }));

      it('a drained pool builder stays out of the pool until it comes back as a new incarnation', () =>
        withTables(async ({ r, register }) => {
          const epoch = await register('b1', { nowMs: T0 });
          await register('b2', { nowMs: T0 + 100, leaseMs: 100 * LEASE_MS, replica: 1 });
          assert.equal(await r(1).drainIfIdle('b1', AMD, epoch), true);
          assert.equal(
            await r(2).renewBuilder({ agentId: 'b1', platform: AMD, gatewayId: 'gw-0', epoch, nowMs: T0 + 200, leaseMs: LEASE_MS, draining: false }),
            true,
          );
          assert.equal(assertActive(await r(0).acquire(acquireReq('a-1', 'alpha', T0 + 300)), 'alpha').agentId, 'b2');
          assertPending(await r(1).acquire(acquireReq('b-1', 'beta', T0 + 400)), 'no-builder', 'b1 is draining');
          const back = await register('b1', { nowMs: T0 + 200 + LEASE_MS, replica: 2 });
          assert.notEqual(back, epoch);
          const b = assertActive(await r(2).acquire(acquireReq('b-1', 'beta', T0 + 201 + LEASE_MS)), 'beta');
          assert.equal(b.agentId, 'b1');
          assert.equal(b.builderEpoch, back);
        }));

      it(`looks at ${POOL_SCAN_LIMIT} pool entries at most: past that many lapsed ones the build stays pending without a demand, and its next acquire looks further`, () =>
        withTables(async ({ r, register }) => {
          for (let i = 0; i <= POOL_SCAN_LIMIT; i++) await register(`lapsed-${String(i).padStart(3, '0')}`, { nowMs: T0, replica: i });
          await register('live', { nowMs: T0 + 1, leaseMs: 100 * LEASE_MS, replica: 1 });
          const expired = T0 + LEASE_MS;
          assertPending(await r(0).acquire(acquireReq('a-1', 'alpha', expired)), 'no-builder', `${POOL_SCAN_LIMIT + 1} lapsed builders ahead of the live one`);
          assert.deepEqual(await r(1).listDemands(AMD), [], 'the pool is not known to be empty: the fleet is not asked');
          const placed = assertActive(await r(2).acquire(acquireReq('a-1', 'alpha', expired + 1)), 'the next acquire');
          assert.equal(placed.agentId, 'live');
          assert.equal(placed.waitedMs, 1);
        }));
    });

    describe('allocations', () => {
      it('records an active allocation', () =>
        withTables(async ({ r, register }) => {
          assertPending(await r(0).acquire(acquireReq('a-1', 'alpha', T0 - 50)), 'no-builder', 'before the builder');
          assert.equal((await r(1).getAllocation('a-1', AMD))?.state, 'pending');
          const epoch = await register('b1');
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha', T0 + 50)), 'after');
          const rec = await r(1).getAllocation('a-1', AMD);
          const expected: AllocationRecord = {
            buildId: 'a-1',
            project: 'alpha',
            platform: AMD,
            state: 'active',
            agentId: 'b1',
            builderEpoch: epoch,
            reason: undefined,
            createdAtMs: T0 - 50,
            activeAtMs: T0 + 50,
            heartbeatDeadlineMs: T0 + 50 + ALLOC_LEASE_MS,
            endedAtMs: undefined,
          };
          assert.deepEqual(rec, expected);
          assert.equal(await r(2).getAllocation('nope', AMD), undefined);
          assert.equal(await r(2).getAllocation('a-1', ARM), undefined);
        }));

      it('endAllocation frees the slot, is idempotent and keeps the first end state', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { capacity: 1 });
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'a-1');
          assertPending(await r(0).acquire(acquireReq('a-2', 'alpha', T0 + 1)), 'busy', 'a-2');
          const ended = await r(1).endAllocation('a-1', AMD, 'finished', 'done', T0 + 10);
          assert.equal(ended?.state, 'finished');
          assert.equal(ended?.endedAtMs, T0 + 10);
          assert.equal(ended?.reason, undefined, 'a finished build needs no reason');
          const rec = await r(2).getBuilder('b1', AMD);
          assert.equal(rec?.active, 0);
          assert.equal(rec?.lastUsedAtMs, T0 + 10);
          assert.deepEqual(await r(2).allocationsOn('b1', AMD), []);
          const again = await r(2).endAllocation('a-1', AMD, 'cancelled', 'changed my mind', T0 + 20);
          assert.equal(again?.state, 'finished', 'the first end state stays');
          assert.equal(again?.endedAtMs, T0 + 10);
          assert.equal((await r(0).getBuilder('b1', AMD))?.active, 0, 'a second end frees nothing more');
          assert.deepEqual(await r(0).acquire(acquireReq('a-1', 'alpha', T0 + 30)), { state: 'finished', reason: 'finished' });
          assertActive(await r(0).acquire(acquireReq('a-2', 'alpha', T0 + 40)), 'a-2 takes the freed slot');
          const cancelled = await r(1).endAllocation('a-3', AMD, 'cancelled', 'nobody asked', T0 + 50);
          assert.equal(cancelled, undefined, 'unknown build');
          assertPending(await r(0).acquire(acquireReq('a-4', 'alpha', T0 + 60)), 'busy', 'a-4');
          const gaveUp = await r(2).endAllocation('a-4', AMD, 'cancelled', 'client went away', T0 + 70);
          assert.equal(gaveUp?.state, 'cancelled');
          assert.equal(gaveUp?.reason, 'client went away');
          assert.deepEqual(await r(1).acquire(acquireReq('a-4', 'alpha', T0 + 80)), { state: 'cancelled', reason: 'client went away' });
          assert.equal((await r(0).getBuilder('b1', AMD))?.active, 1, 'ending a pending allocation frees no slot');
        }));

      it('heartbeats push the deadline; a missed deadline expires the allocation and frees its slot', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { capacity: 2, leaseMs: 10 * ALLOC_LEASE_MS });
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'a-1');
          assertActive(await r(0).acquire(acquireReq('a-2', 'alpha')), 'a-2');
          const hb = await r(1).heartbeatAllocation('a-1', AMD, T0 + 20_000, ALLOC_LEASE_MS);
          assert.equal(hb?.state, 'active');
          assert.equal(hb?.heartbeatDeadlineMs, T0 + 20_000 + ALLOC_LEASE_MS);
          const early = await r(2).reap(AMD, T0 + ALLOC_LEASE_MS - 1);
          assert.deepEqual(early, { expiredBuilders: [], failedAllocations: [], expiredAllocations: [] });
          const reaped = await r(2).reap(AMD, T0 + ALLOC_LEASE_MS);
          assert.deepEqual(reaped, { expiredBuilders: [], failedAllocations: [], expiredAllocations: ['a-2'] });
          const a2 = await r(0).getAllocation('a-2', AMD);
          assert.equal(a2?.state, 'expired');
          assert.equal(a2?.endedAtMs, T0 + ALLOC_LEASE_MS);
          assert.equal((await r(0).getAllocation('a-1', AMD))?.state, 'active', 'the heartbeat kept a-1');
          assert.deepEqual(await r(1).allocationsOn('b1', AMD), ['a-1']);
          assert.equal((await r(1).getBuilder('b1', AMD))?.active, 1);
          assert.deepEqual(await r(0).reap(AMD, T0 + ALLOC_LEASE_MS), { expiredBuilders: [], failedAllocations: [], expiredAllocations: [] }, 'reap is idempotent');
          const late = await r(0).heartbeatAllocation('a-1', AMD, T0 + 20_000 + ALLOC_LEASE_MS, ALLOC_LEASE_MS);
          assert.equal(late?.state, 'expired', 'a heartbeat after the deadline is too late, reaped or not');
          assert.equal((await r(1).getBuilder('b1', AMD))?.active, 0);
          assert.equal(await r(2).heartbeatAllocation('nope', AMD, T0, ALLOC_LEASE_MS), undefined);
        }));

      it('reap() fails the allocations of a builder whose lease passed and takes it out of placement', () =>
        withTables(async ({ r, register }) => {
          await register('b1', { capacity: 2 });
          await register('b2', { capacity: 1, leaseMs: 100 * LEASE_MS, replica: 1 });
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'a-1');
          assertActive(await r(1).acquire(acquireReq('a-2', 'alpha')), 'a-2');
          const b = assertActive(await r(2).acquire(acquireReq('b-1', 'beta')), 'b-1');
          assert.equal(b.agentId, 'b2');
          assert.deepEqual(await r(2).reap(AMD, T0 + LEASE_MS - 1), { expiredBuilders: [], failedAllocations: [], expiredAllocations: [] });
          const reaped = await r(2).reap(AMD, T0 + LEASE_MS);
          assert.deepEqual(reaped, { expiredBuilders: ['b1'], failedAllocations: ['a-1', 'a-2'], expiredAllocations: [] });
          for (const id of ['a-1', 'a-2']) {
            const rec = await r(0).getAllocation(id, AMD);
            assert.equal(rec?.state, 'failed');
            assert.match(rec?.reason ?? '', /b1/, 'the reason names the builder');
            assert.equal(rec?.endedAtMs, T0 + LEASE_MS);
          }
          const res = await r(1).acquire(acquireReq('a-1', 'alpha', T0 + LEASE_MS + 1));
          assert.equal(res.state, 'failed');
          assert.equal(await r(0).getBuilder('b1', AMD), undefined, 'removed from placement');
          assert.deepEqual((await r(0).listBuilders(AMD)).map((x) => x.agentId), ['b2']);
          assert.deepEqual(await r(1).boundBuilders('alpha', AMD), ['b1'], 'the binding outlives the lease');
          assertPending(await r(1).acquire(acquireReq('a-3', 'alpha', T0 + LEASE_MS + 1)), 'starting', 'alpha waits for its builder');
          assert.equal((await r(2).getAllocation('b-1', AMD))?.state, 'active', 'other builders are untouched');
          assert.deepEqual(await r(0).reap(AMD, T0 + LEASE_MS + 2), { expiredBuilders: [], failedAllocations: [], expiredAllocations: [] });
          const back = await r(0).registerBuilder(registration('b1', { capacity: 2, nowMs: T0 + LEASE_MS + 3 }));
          assert.equal(back.project, 'alpha');
          const placed = assertActive(await r(1).acquire(acquireReq('a-3', 'alpha', T0 + LEASE_MS + 4)), 'a-3 once b1 is back');
          assert.equal(placed.agentId, 'b1');
          assert.equal(placed.warm, true);
          assert.equal(placed.builderEpoch, back.epoch);
        }));

      it('a builder that registers again after its lease passed, before any reap, fails what it ran', () =>
        withTables(async ({ r, register }) => {
          const first = await register('b1', { capacity: 2 });
          assertActive(await r(0).acquire(acquireReq('a-1', 'alpha')), 'a-1');
          const second = await register('b1', { capacity: 2, nowMs: T0 + LEASE_MS, replica: 1 });
          assert.notEqual(second, first);
          const rec = await r(2).getAllocation('a-1', AMD);
          assert.equal(rec?.state, 'failed');
          assert.match(rec?.reason ?? '', /b1/);
          const b = await r(2).getBuilder('b1', AMD);
          assert.equal(b?.active, 0);
          assert.equal(b?.project, 'alpha');
          assert.deepEqual(await r(0).allocationsOn('b1', AMD), []);
        }));
    });

    describe('demands', () => {
      it('lists projects waiting for a builder; a demand goes once the project is placed', () =>
        withTables(async ({ r, register }) => {
          assertPending(await r(0).acquire(acquireReq('a-1', 'alpha', T0)), 'no-builder', 'alpha');
          assertPending(await r(1).acquire(acquireReq('a-2', 'alpha', T0 + 100)), 'no-builder', 'alpha again');
          const epoch = await register('stopped', { nowMs: T0 });
          assert.ok(await r(2).bindBuilder('stopped', AMD, 'beta'));
          await r(0).unlinkBuilder('stopped', AMD, 'gw-0', epoch);
          assert.ok(await r(2).bindBuilder('never', AMD, 'beta'));
          assertPending(await r(2).acquire(acquireReq('b-1', 'beta', T0 + 200)), 'starting', 'beta');
          assert.deepEqual(await r(0).listDemands(AMD), [
            { project: 'alpha', platform: AMD, sinceMs: T0, boundAgentIds: [] },
            { project: 'beta', platform: AMD, sinceMs: T0 + 200, boundAgentIds: ['never', 'stopped'] },
          ]);
          assert.deepEqual(await r(0).listDemands(ARM), []);
          await register('fresh', { nowMs: T0 + 300, replica: 1 });
          assertActive(await r(1).acquire(acquireReq('a-2', 'alpha', T0 + 400)), 'alpha on the fresh builder');
          assert.deepEqual(
            (await r(2).listDemands(AMD)).map((d) => d.project),
            ['beta'],
            'alpha was placed',
          );
        }));

      it('a demand nobody asks for again lapses with the pending allocation', () =>
        withTables(async ({ r }) => {
          assertPending(await r(0).acquire(acquireReq('a-1', 'alpha', T0)), 'no-builder', 'alpha');
          assert.equal((await r(1).listDemands(AMD)).length, 1);
          const reaped = await r(1).reap(AMD, T0 + ALLOC_LEASE_MS);
          assert.deepEqual(reaped.expiredAllocations, ['a-1']);
          assert.equal((await r(2).getAllocation('a-1', AMD))?.state, 'expired');
          assert.deepEqual(await r(2).listDemands(AMD), []);
        }));
    });

    describe('replicas and leadership', () => {
      it('announces replicas and lists the live ones', () =>
        withTables(async ({ r }) => {
          await r(0).announceReplica('gw-0', 'https://10.0.0.1:9443', T0, 1_000);
          await r(1).announceReplica('gw-1', 'https://10.0.0.2:9443', T0 + 500, 1_000);
          assert.deepEqual(
            [...(await r(2).listReplicas(T0 + 999))],
            [['gw-0', 'https://10.0.0.1:9443'], ['gw-1', 'https://10.0.0.2:9443']],
          );
          assert.deepEqual([...(await r(2).listReplicas(T0 + 1_000))], [['gw-1', 'https://10.0.0.2:9443']]);
          await r(0).announceReplica('gw-0', 'https://10.0.0.9:9443', T0 + 1_200, 1_000);
          assert.deepEqual(
            [...(await r(1).listReplicas(T0 + 1_300))],
            [['gw-0', 'https://10.0.0.9:9443'], ['gw-1', 'https://10.0.0.2:9443']],
          );
          assert.deepEqual([...(await r(1).listReplicas(T0 + 5_000))], []);
        }));

      it('one leader at a time, with a fencing token that grows with every new holder', () =>
        withTables(async ({ r }) => {
          const first = await r(0).acquireLeadership('fleet', 'gw-0', T0, 1_000);
          assert.ok(first);
          assert.equal(first.holderId, 'gw-0');
          assert.equal(first.expiresAtMs, T0 + 1_000);
          assert.equal(await r(1).acquireLeadership('fleet', 'gw-1', T0 + 500, 1_000), undefined, 'held by gw-0');
          const renewed = await r(2).acquireLeadership('fleet', 'gw-0', T0 + 900, 1_000);
          assert.equal(renewed?.token, first.token, 'renewal keeps the token');
          assert.equal(renewed?.expiresAtMs, T0 + 1_900);
          assert.equal(await r(1).acquireLeadership('fleet', 'gw-1', T0 + 1_899, 1_000), undefined, 'still held');
          assert.equal(await r(0).checkFence('fleet', first.token, T0 + 1_899), true);
          const other = await r(2).acquireLeadership('other', 'gw-1', T0, 1_000);
          assert.ok(other, 'names are independent');
          const second = await r(1).acquireLeadership('fleet', 'gw-1', T0 + 1_900, 1_000);
          assert.ok(second, 'taken once the lease passed');
          assert.equal(second.holderId, 'gw-1');
          assert.ok(second.token > first.token, `token ${second.token} must exceed ${first.token}`);
          assert.equal(await r(0).checkFence('fleet', first.token, T0 + 1_900), false, 'the old token is fenced off');
          assert.equal(await r(2).checkFence('fleet', second.token, T0 + 1_900), true);
          assert.equal(await r(2).checkFence('fleet', second.token, T0 + 2_900), false, 'not past its expiry');
          await r(0).resignLeadership('fleet', first.token);
          assert.equal(await r(2).checkFence('fleet', second.token, T0 + 2_000), true, 'a stale resign changes nothing');
          await r(1).resignLeadership('fleet', second.token);
          assert.equal(await r(2).checkFence('fleet', second.token, T0 + 2_000), false);
          const third = await r(0).acquireLeadership('fleet', 'gw-0', T0 + 2_000, 1_000);
          assert.ok(third);
          assert.ok(third.token > second.token, 'tokens keep growing after a resignation');
          assert.equal(await r(0).checkFence('never-held', 1, T0), false);
        }));
    });

    describe('concurrency', () => {
      it('keeps every consistency rule under concurrent acquires from all replicas', () =>
        withTables(async ({ tables, r }) => {
          const builders = 12;
          const capacity = 3;
          const projects = 20;
          const builds = 200;
          for (let i = 0; i < builders; i++) {
            const id = `b${String(i).padStart(2, '0')}`;
            await r(i).registerBuilder(registration(id, { capacity, leaseMs: 3_600_000, gatewayId: `gw-${i % tables.length}` }));
          }
          const buildIds = Array.from({ length: builds }, (_, i) => `build-${String(i).padStart(3, '0')}`);
          // Interleave projects so neighbouring calls compete for different and for the same builders.
          const projectOf = (i: number): string => `p${String((i * 7) % projects).padStart(2, '0')}`;
          const placedNowCount = new Map<string, number>();
          const state = new Map<string, AcquireResult>();
          const acquireOne = async (i: number, now: number): Promise<void> => {
            const id = buildIds[i] as string;
            const res = await r(i).acquire(acquireReq(id, projectOf(i), now, { allocationLeaseMs: 3_600_000 }));
            state.set(id, res);
            if (res.state === 'active' && res.placedNow) placedNowCount.set(id, (placedNowCount.get(id) ?? 0) + 1);
          };
          let now = T0;
          await Promise.all(buildIds.map((_, i) => acquireOne(i, now)));
          for (let round = 1; round <= 4; round++) {
            now += 2_000;
            const work: Promise<unknown>[] = [];
            let k = 0;
            for (let i = 0; i < builds; i++) {
              const id = buildIds[i] as string;
              const s = state.get(id);
              if (s?.state === 'active' && k++ % 3 === round % 3) {
                work.push(r(i + 1).endAllocation(id, AMD, 'finished', '', now).then(() => state.delete(id)));
              } else if (s?.state === 'pending' || s?.state === 'active') {
                work.push(acquireOne(i, now));
              }
            }
            work.push(r(round).reap(AMD, now));
            await Promise.all(work);
          }

          const final = await r(0).listBuilders(AMD);
          assert.equal(final.length, builders);
          const allocs = new Map<string, AllocationRecord>();
          for (const id of buildIds) {
            const rec = await r(1).getAllocation(id, AMD);
            assert.ok(rec, `allocation ${id} exists`);
            allocs.set(id, rec);
          }
          const seen = new Set<string>();
          let totalActive = 0;
          for (const b of final) {
            assert.ok(b.active <= b.capacity, `${b.agentId}: ${b.active} active > capacity ${b.capacity}`);
            const on = await r(2).allocationsOn(b.agentId, AMD);
            const activeHere = [...allocs.values()].filter((a) => a.state === 'active' && a.agentId === b.agentId);
            assert.equal(b.active, activeHere.length, `${b.agentId}: active count matches its active allocations`);
            assert.deepEqual([...on].sort(), activeHere.map((a) => a.buildId).sort(), `${b.agentId}: allocationsOn`);
            for (const id of on) {
              assert.ok(!seen.has(id), `${id} is on two builders`);
              seen.add(id);
            }
            const projectsHere = new Set(activeHere.map((a) => a.project));
            assert.ok(projectsHere.size <= 1, `${b.agentId} runs ${[...projectsHere].join(', ')}`);
            if (activeHere.length > 0) assert.equal(b.project, activeHere[0]?.project, `${b.agentId} is bound to the project it runs`);
            totalActive += b.active;
          }
          for (const a of allocs.values()) {
            if (a.state !== 'active') continue;
            const holders = final.filter((b) => b.agentId === a.agentId);
            assert.equal(holders.length, 1, `${a.buildId} is on exactly one builder`);
            assert.equal(holders[0]?.project, a.project);
            assert.equal(holders[0]?.epoch, a.builderEpoch);
          }
          for (const [id, n] of placedNowCount) assert.equal(n, 1, `${id} was placed ${n} times`);
          const ended = [...allocs.values()].filter((a) => a.state === 'finished').length;
          assert.ok(totalActive > 0 && ended > 0, `the run placed and ended builds (active ${totalActive}, finished ${ended})`);
          assert.ok(totalActive <= builders * capacity);
        }));
    });
  });
}
