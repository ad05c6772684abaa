import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { createLogger } from '@slipway/proto';
import { BuildService } from '../src/buildService.js';
import { GatewayError } from '../src/gatewayError.js';
import { createGatewayMetrics } from '../src/metrics.js';
import { MemoryRoutingTable } from '../src/routing/memoryRoutingTable.js';
import { TokenIssuer, generateSigningKey } from '../src/tokenIssuer.js';
import { TokenVerifier } from '../src/tokenVerifier.js';
import type { ClientIdentity } from '../src/authenticator.js';

const key = generateSigningKey('build-test');
const issuer = new TokenIssuer({ issuer: 'slipway-test', privateJwk: key.privateJwk });
const verifier = new TokenVerifier({ issuer: 'slipway-test', keys: [key.publicJwk] });

function fixture(options: { canProvision?: boolean; ttlSec?: number; isolate?: string[] } = {}) {
  // Real time: build tokens are issued and verified against the wall clock.
  let nowMs = Date.now();
  const table = new MemoryRoutingTable();
  const metrics = createGatewayMetrics(
    () => [],
    () => [],
  );
  const builds = new BuildService({
    table,
    issuer,
    metrics,
    log: createLogger('test', 'silent'),
    spillAfterMs: 1_000,
    buildLeaseMs: 10_000,
    buildHeartbeatIntervalMs: 2_000,
    buildTokenTtlSec: options.ttlSec ?? 3_600,
    canProvision: () => options.canProvision ?? false,
    isolateUntrusted: async (project) => (options.isolate ?? []).includes(project),
    now: () => nowMs,
  });
  const builder = (agentId: string, capacity = 1) =>
    table.registerBuilder({ agentId, platform: 'linux/amd64', fleet: 'f', capacity, gatewayId: 'gw', nowMs, leaseMs: 600_000 });
  const projectIdentity = async (project: string): Promise<ClientIdentity> =>
    verifier.verifyClient(await issuer.issueClientToken({ project, subject: 'ci', scopes: ['build'], ttlSec: 600 }));
  const newBuild = async (project: string) => {
    const created = await builds.create(await projectIdentity(project), ['linux/amd64']);
    return { created, identity: await verifier.verifyClient(created.token) };
  };
  const untrustedBuild = async (project: string) => {
    const projectToken = await issuer.issueProjectToken({ project, subject: 'oidc:repo:fork/web:pull_request', scopes: ['build'], ttlSec: 600, tokenId: crypto.randomUUID(), untrusted: true });
    const created = await builds.create(await verifier.verifyClient(projectToken), ['linux/amd64']);
    return { created, identity: await verifier.verifyClient(created.token) };
  };
  return { table, metrics, builds, builder, projectIdentity, newBuild, untrustedBuild, advance: (ms: number) => (nowMs += ms) };
}

describe('BuildService', () => {
  it('mints a build token that names the build and the project', async () => {
    const f = fixture();
    const { created, identity } = await f.newBuild('web');
    assert.match(created.buildId, /^[0-9a-f-]{36}$/);
    assert.equal(identity.buildId, created.buildId);
    assert.equal(identity.project, 'web');
    assert.deepEqual(created.platforms, ['linux/amd64']);
  });

  it('refuses bad platform lists naming what arrived', async () => {
    const f = fixture();
    const id = await f.projectIdentity('web');
    await assert.rejects(f.builds.create(id, []), (e: GatewayError) => e.code === 'BAD_REQUEST' && /non-empty array/.test(e.message));
    await assert.rejects(f.builds.create(id, ['linux/s390x']), (e: GatewayError) => e.code === 'UNKNOWN_PLATFORM' && /s390x/.test(e.message));
  });

  it('places repeated builds of a project on its warm builder and counts hits, misses and spills', async () => {
    const f = fixture();
    await f.builder('b1');
    await f.builder('b2');
    const first = await f.newBuild('web');
    const a1 = await f.builds.acquire(first.identity, first.created.buildId, 'linux/amd64');
    assert.equal(a1.state, 'active');
    await f.builds.end(first.identity, first.created.buildId, 'finished', 'done');
    const second = await f.newBuild('web');
    const a2 = await f.builds.acquire(second.identity, second.created.buildId, 'linux/amd64');
    assert.ok(a1.state === 'active' && a2.state === 'active');
    assert.equal(a2.builder.agentId, a1.builder.agentId);
    assert.equal(a2.warm, true);
    // The warm builder is now busy: a third build waits, then spills to the other builder.
    const third = await f.newBuild('web');
    const pending = await f.builds.acquire(third.identity, third.created.buildId, 'linux/amd64');
    assert.equal(pending.state, 'pending');
    assert.ok(pending.state === 'pending' && pending.reason === 'busy' && pending.retryAfterMs > 0);
    f.advance(1_500);
    const spilled = await f.builds.acquire(third.identity, third.created.buildId, 'linux/amd64');
    assert.ok(spilled.state === 'active' && spilled.spilled && spilled.builder.agentId !== a1.builder.agentId);
    const text = f.metrics.registry.render();
    assert.match(text, /slipway_placements_total\{kind="warm",platform="linux\/amd64"\} 1/);
    assert.match(text, /slipway_placements_total\{kind="pool",platform="linux\/amd64"\} 1/);
    assert.match(text, /slipway_placements_total\{kind="spill",platform="linux\/amd64"\} 1/);
    assert.match(text, /slipway_placement_affinity_total\{platform="linux\/amd64",result="hit"\} 1/);
    assert.match(text, /slipway_placement_spills_total\{platform="linux\/amd64"\} 1/);
    assert.match(text, /slipway_placement_queue_wait_seconds_count\{platform="linux\/amd64"\} 3/);
    assert.match(text, /slipway_placement_pending_total\{platform="linux\/amd64",reason="busy"\} 1/);
  });

  it('only the build token of that very build acts on it', async () => {
    const f = fixture();
    await f.builder('b1');
    const one = await f.newBuild('web');
    const two = await f.newBuild('web');
    await assert.rejects(f.builds.acquire(await f.projectIdentity('web'), one.created.buildId, 'linux/amd64'), (e: GatewayError) => e.code === 'FORBIDDEN' && /project token/.test(e.message));
    await assert.rejects(f.builds.acquire(two.identity, one.created.buildId, 'linux/amd64'), (e: GatewayError) => e.code === 'FORBIDDEN' && /not/.test(e.message));
    await assert.rejects(f.builds.create(one.identity, ['linux/amd64']), (e: GatewayError) => e.code === 'FORBIDDEN');
  });

  it('routes tunnels of a build to its builder and refuses ended and unacquired ones', async () => {
    const f = fixture();
    await f.builder('b1');
    const b = await f.newBuild('web');
    await assert.rejects(f.builds.builderFor(b.identity, 'linux/amd64'), (e: GatewayError) => e.code === 'NO_CAPACITY' && /acquire one first/.test(e.message));
    await f.builds.acquire(b.identity, b.created.buildId, 'linux/amd64');
    assert.deepEqual(await f.builds.builderFor(b.identity, 'linux/amd64'), { agentId: 'b1', buildId: b.created.buildId });
    await f.builds.end(b.identity, b.created.buildId, 'cancelled', 'user pressed Ctrl-C');
    await assert.rejects(f.builds.builderFor(b.identity, 'linux/amd64'), (e: GatewayError) => e.code === 'BUILD_ENDED' && /cancelled/.test(e.message));
    await assert.rejects(f.builds.builderFor(await f.projectIdentity('web'), 'linux/amd64'), (e: GatewayError) => e.code === 'FORBIDDEN' && /build token/.test(e.message));
  });

  it('answers NO_AGENT at once when no builder of the platform exists and the fleet cannot launch; waits when it can', async () => {
    const local = fixture({ canProvision: false });
    const b = await local.newBuild('web');
    await assert.rejects(local.builds.acquire(b.identity, b.created.buildId, 'linux/amd64'), (e: GatewayError) => e.code === 'NO_AGENT' && /linux\/amd64/.test(e.message));
    const fleet = fixture({ canProvision: true });
    const c = await fleet.newBuild('web');
    const answer = await fleet.builds.acquire(c.identity, c.created.buildId, 'linux/amd64');
    assert.ok(answer.state === 'pending' && answer.reason === 'no-builder');
    assert.deepEqual((await fleet.table.listDemands('linux/amd64')).map((d) => d.project), ['web']);
  });

  it('renews the build token on a heartbeat past half its life, keeps the build alive, and reports a lost builder', async () => {
    const f = fixture({ ttlSec: 120 });
    await f.builder('b1');
    const b = await f.newBuild('web');
    await f.builds.acquire(b.identity, b.created.buildId, 'linux/amd64');
    const early = await f.builds.heartbeat(b.identity, b.created.buildId);
    assert.equal(early.token, undefined);
    // Heartbeats keep the allocation past its lease; the token is renewed once past half-life.
    const aged = { ...b.identity, expiresAt: new Date(b.identity.expiresAt.getTime() - 90_000) };
    f.advance(8_000);
    const late = await f.builds.heartbeat(aged, b.created.buildId);
    assert.ok(late.token, 'a fresh token');
    assert.equal((await verifier.verifyClient(late.token)).buildId, b.created.buildId);
    f.advance(8_000);
    const status = await f.builds.heartbeat(b.identity, b.created.buildId);
    assert.equal(status.allocations[0]?.state, 'active');
    // Heartbeats stop: the allocation expires and the builder's slot is free again.
    const later = f.advance(20_000);
    await f.table.reap('linux/amd64', later);
    const after = await f.builds.get(b.identity, b.created.buildId);
    assert.equal(after.allocations[0]!.state, 'expired');
    await assert.rejects(f.builds.builderFor(b.identity, 'linux/amd64'), (e: GatewayError) => e.code === 'BUILD_ENDED' && /expired/.test(e.message));
    const next = await f.newBuild('web');
    const placed = await f.builds.acquire(next.identity, next.created.buildId, 'linux/amd64');
    assert.ok(placed.state === 'active' && placed.builder.agentId === 'b1');
  });
});

describe('reading builds', () => {
  it("a project token with the read scope reads its project's builds, and another project's build does not exist for it", async () => {
    const f = fixture();
    await f.builder('b1');
    await f.builder('b2');
    const web = await f.newBuild('web');
    await f.builds.acquire(web.identity, web.created.buildId, 'linux/amd64');
    const reader = await verifier.verifyClient(await issuer.issueClientToken({ project: 'web', subject: 'dash', scopes: ['read'], ttlSec: 600 }), null);
    const status = await f.builds.get(reader, web.created.buildId);
    assert.equal(status.allocations[0]?.state, 'active');
    const otherReader = await verifier.verifyClient(await issuer.issueClientToken({ project: 'api', subject: 'dash', scopes: ['read'], ttlSec: 600 }), null);
    await assert.rejects(f.builds.get(otherReader, web.created.buildId), (e: GatewayError) => e.code === 'NOT_FOUND');
    const noScope = await verifier.verifyClient(await issuer.issueClientToken({ project: 'web', subject: 'x', scopes: ['admin-ish'], ttlSec: 600 }), null);
    await assert.rejects(f.builds.get(noScope, web.created.buildId), (e: GatewayError) => e.code === 'FORBIDDEN' && /read/.test(e.message));
    // Reading is all it may do: acting on the build still takes the build token.
    await assert.rejects(f.builds.end(reader, web.created.buildId, 'cancelled', 'x'), (e: GatewayError) => e.code === 'FORBIDDEN');
  });
});

describe('untrusted CI identities', () => {
  it("run on a throwaway builder, never the project's warm one, when the project isolates them", async () => {
    const f = fixture({ canProvision: true, isolate: ['web'] });
    await f.builder('warm', 4);
    await f.builder('spare', 4);
    const trusted = await f.newBuild('web');
    const t = await f.builds.acquire(trusted.identity, trusted.created.buildId, 'linux/amd64');
    assert.ok(t.state === 'active');
    const fork = await f.untrustedBuild('web');
    assert.equal(fork.identity.untrusted, true, 'the build token carries the untrusted mark');
    const u = await f.builds.acquire(fork.identity, fork.created.buildId, 'linux/amd64');
    assert.ok(u.state === 'active' && u.builder.agentId !== t.builder.agentId, 'not on the warm builder, although it has room');
    assert.equal(u.warm, false);
    const bound = await f.table.boundBuilders('web', 'linux/amd64');
    assert.deepEqual(bound, [t.builder.agentId], 'the throwaway builder is never bound to the project');
    assert.deepEqual(await f.builds.builderFor(fork.identity, 'linux/amd64'), { agentId: u.builder.agentId, buildId: fork.created.buildId });
  });

  it('are refused where the fleet cannot provide a throwaway builder', async () => {
    const f = fixture({ canProvision: false, isolate: ['web'] });
    await f.builder('warm', 4);
    const fork = await f.untrustedBuild('web');
    await assert.rejects(f.builds.acquire(fork.identity, fork.created.buildId, 'linux/amd64'), (e: GatewayError) => e.code === 'FORBIDDEN' && /throwaway/.test(e.message));
  });

  it("share the project's builders when the project does not isolate them", async () => {
    const f = fixture({ canProvision: false, isolate: [] });
    await f.builder('warm', 4);
    const trusted = await f.newBuild('web');
    await f.builds.acquire(trusted.identity, trusted.created.buildId, 'linux/amd64');
    const fork = await f.untrustedBuild('web');
    const u = await f.builds.acquire(fork.identity, fork.created.buildId, 'linux/amd64');
    assert.ok(u.state === 'active' && u.builder.agentId === 'warm' && u.warm);
  });
});
