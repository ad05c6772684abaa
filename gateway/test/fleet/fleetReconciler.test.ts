// The fleet reconciler on MemoryRoutingTable and Ec2FleetProvider, through the real
// @aws-sdk/client-ec2 against the fake EC2 server on a real socket. One driven clock for the
// table, the provider, the fake and the reconciler; agents are simulated by registering builders.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, type Platform } from '@slipway/proto';
import { MemoryRoutingTable } from '../../src/routing/memoryRoutingTable.js';
import type { AcquireResult } from '../../src/routing/routingTable.js';
import { parseEc2FleetConfig } from '../../src/fleet/ec2FleetConfig.js';
import { Ec2FleetProvider, PLATFORM_TAG, PROJECT_TAG, STOPPED_AT_TAG } from '../../src/fleet/ec2FleetProvider.js';
import type { FleetInstance, FleetProvider, LaunchRequest } from '../../src/fleet/fleetProvider.js';
import { LeaderElection } from '../../src/fleet/leaderElection.js';
import { FleetReconciler, demandClientToken, type FleetReconcilerOptions, type ReconcileReport } from '../../src/fleet/fleetReconciler.js';
import { createGatewayMetrics, type Counter, type GatewayMetrics } from '../../src/metrics.js';
import { FAKE_EC2_CREDENTIALS, FakeEc2Server, indexedValues, type FakeLaunchTemplate } from '../support/index.js';
import { ephemeralProjectFor } from '../../src/ephemeralProject.js';

const AMD: FakeLaunchTemplate = { id: 'lt-0a1b2c3d4e5f60718', name: 'builder-amd64', architecture: 'x86_64', instanceType: 'c6id.xlarge' };
const ARM: FakeLaunchTemplate = { id: 'lt-0f1e2d3c4b5a69788', name: 'builder-arm64', architecture: 'arm64', instanceType: 'c7gd.xlarge' };
const NAME = 'fleet:builders';
const LEADER_TTL_MS = 30_000;
const BUILDER_LEASE_MS = 120_000;
const IDLE_STOP_MS = 60_000;
const RETENTION_MS = 3_600_000;
const log = createLogger('test', 'silent');

interface Setup {
  fake: FakeEc2Server;
  table: MemoryRoutingTable;
  clock: { nowMs: number };
  metrics: GatewayMetrics;
  sleeps: number[];
  provider: Ec2FleetProvider;
  reconciler: FleetReconciler;
  election: LeaderElection;
  /** Renews leadership, then runs one pass. */
  pass(): Promise<ReconcileReport>;
  /** A build of the project asks for a builder (as the gateway's acquire does). */
  want(buildId: string, project: string, platform?: Platform): Promise<AcquireResult>;
  /** The instance's agent registers through replica gw-a; returns the builder epoch. */
  boot(instanceId: string, platform?: Platform): Promise<number>;
  /** The instance's agent link closes (its VM stopped). */
  halt(instanceId: string, epoch: number, platform?: Platform): Promise<void>;
  /** Instances the fake holds that are not terminated, oldest first. */
  live(): ReturnType<FakeEc2Server['instances']>;
}

async function setup(
  t: TestContext,
  settings: Partial<FleetReconcilerOptions> = {},
  ec2: Record<string, unknown> = {},
  wrap: (p: FleetProvider) => FleetProvider = (p) => p,
): Promise<Setup> {
  const clock = { nowMs: Date.parse('2026-11-27T10:00:00.000Z') };
  const now = (): number => clock.nowMs;
  const fake = await FakeEc2Server.start({ templates: [AMD, ARM], now });
  const config = parseEc2FleetConfig({
    fleet: 'builders',
    region: 'us-east-1',
    endpoint: fake.url,
    launchTemplates: { 'linux/amd64': { id: AMD.id }, 'linux/arm64': { name: ARM.name } },
    ...ec2,
  });
  const sleeps: number[] = [];
  const provider = new Ec2FleetProvider(config, {
    credentials: { ...FAKE_EC2_CREDENTIALS },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    now,
  });
  const table = new MemoryRoutingTable();
  const election = new LeaderElection({ table, name: NAME, holderId: 'gw-a', ttlMs: LEADER_TTL_MS, log, now });
  const metrics = createGatewayMetrics(() => [], () => []);
  const reconciler = new FleetReconciler({
    fleet: wrap(provider),
    table,
    election,
    leadershipName: NAME,
    platforms: ['linux/amd64', 'linux/arm64'],
    idleStopMs: IDLE_STOP_MS,
    retentionMs: RETENTION_MS,
    warmPoolSize: 0,
    reconcileIntervalMs: 10_000,
    maxInstancesPerPlatform: 10,
    metrics,
    log,
    now,
    ...settings,
  });
  t.after(async () => {
    await reconciler.close();
    await election.close();
    provider.close();
    await fake.close();
  });
  return {
    fake,
    table,
    clock,
    metrics,
    sleeps,
    provider,
    reconciler,
    election,
    async pass() {
      await election.tick();
      return reconciler.reconcileOnce();
    },
    want: (buildId, project, platform = 'linux/amd64') =>
      table.acquire({ buildId, project, platform, nowMs: clock.nowMs, spillAfterMs: 30_000, allocationLeaseMs: 3 * RETENTION_MS }),
    async boot(instanceId, platform = 'linux/amd64') {
      const lease = await table.registerBuilder({
        agentId: instanceId,
        platform,
        fleet: 'builders',
        capacity: 1,
        instanceId,
        gatewayId: 'gw-a',
        nowMs: clock.nowMs,
        leaseMs: BUILDER_LEASE_MS,
      });
      return lease.epoch;
    },
    halt: (instanceId, epoch, platform = 'linux/amd64') => table.unlinkBuilder(instanceId, platform, 'gw-a', epoch),
    live: () => fake.instances().filter((i) => i.state !== 'terminated'),
  };
}

function counted(counter: Counter, labels: Record<string, string>): number {
  const key = `{${Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`)
    .join(',')}}`;
  return counter.values.get(key) ?? 0;
}

function only<T>(items: readonly T[], what: string): T {
  assert.equal(items.length, 1, `exactly one ${what}; got ${items.length}`);
  return items[0]!;
}

function assertActive(result: AcquireResult, agentId: string): asserts result is Extract<AcquireResult, { state: 'active' }> {
  assert.equal(result.state, 'active', `expected active, got ${JSON.stringify(result)}`);
  assert.equal(result.agentId, agentId);
}

test('a demand for a new project launches one instance of the right architecture, tagged for the project and bound; no second launch while it boots or can take the build', async (t) => {
  const s = await setup(t);
  const first = s.clock.nowMs;
  assert.equal((await s.want('b-amd', 'acme')).state, 'pending');
  assert.equal((await s.want('b-arm', 'acme', 'linux/arm64')).state, 'pending');

  const report = await s.pass();
  assert.equal(report.leader, true);
  assert.equal(report.abortedBy, undefined);
  const launches = s.fake.callsOf('RunInstances');
  assert.equal(launches.length, 2);
  const amd = only(s.live().filter((i) => i.tags.get(PLATFORM_TAG) === 'linux/amd64'), 'amd64 instance');
  const arm = only(s.live().filter((i) => i.tags.get(PLATFORM_TAG) === 'linux/arm64'), 'arm64 instance');
  assert.equal(amd.architecture, 'x86_64');
  assert.equal(amd.launchTemplateId, AMD.id);
  assert.equal(arm.architecture, 'arm64');
  assert.equal(arm.launchTemplateId, ARM.id);
  for (const inst of [amd, arm]) {
    assert.equal(inst.tags.get(PROJECT_TAG), 'acme');
    assert.equal(inst.volumes[0]?.tags.get(PROJECT_TAG), 'acme', 'the cache volume carries the project too');
  }
  assert.equal(launches[0]?.params['ClientToken'], demandClientToken('acme', 'linux/amd64', first));
  assert.deepEqual(await s.table.boundBuilders('acme', 'linux/amd64'), [amd.instanceId]);
  assert.deepEqual(await s.table.boundBuilders('acme', 'linux/arm64'), [arm.instanceId]);
  assert.equal(counted(s.metrics.builderStarts, { platform: 'linux/amd64', kind: 'cold' }), 1);
  assert.equal(counted(s.metrics.fleetActions, { action: 'launch', outcome: 'ok' }), 2);

  // The builds keep asking; the instances are running but their agents have not registered.
  s.clock.nowMs += 10_000;
  assert.equal((await s.want('b-amd', 'acme')).state, 'pending');
  const booting = await s.pass();
  assert.equal(s.fake.callsOf('RunInstances').length, 2, 'no second launch while the first boots');
  assert.ok(booting.waiting.some((w) => w.project === 'acme' && /coming up/.test(w.reason)), JSON.stringify(booting.waiting));

  // The agent registers; until the build's next acquire the demand is still there.
  await s.boot(amd.instanceId);
  s.clock.nowMs += 1_000;
  await s.pass();
  assert.equal(s.fake.callsOf('RunInstances').length, 2, 'no launch for a project whose builder has room');
  const placed = await s.want('b-amd', 'acme');
  assertActive(placed, amd.instanceId);
  assert.deepEqual(await s.table.listDemands('linux/amd64'), []);
});

test('an idle builder is drained and stopped; the next build of its project starts the same instance; retention terminates it and frees the binding', async (t) => {
  const s = await setup(t);
  await s.want('b-1', 'acme');
  await s.pass();
  const id = only(s.live(), 'instance').instanceId;
  let epoch = await s.boot(id);
  assertActive(await s.want('b-1', 'acme'), id);

  // Busy builders are never stopped, however long the build runs.
  s.clock.nowMs += IDLE_STOP_MS + 1_000;
  assert.ok(
    await s.table.renewBuilder({ agentId: id, platform: 'linux/amd64', gatewayId: 'gw-a', epoch, nowMs: s.clock.nowMs, leaseMs: BUILDER_LEASE_MS, draining: false }),
    'the agent renews its lease',
  );
  await s.pass();
  assert.equal(s.fake.callsOf('StopInstances').length, 0, 'a builder with an active build keeps running');

  await s.table.endAllocation('b-1', 'linux/amd64', 'finished', 'done', s.clock.nowMs);
  s.clock.nowMs += IDLE_STOP_MS - 1;
  await s.pass();
  assert.equal(s.fake.callsOf('StopInstances').length, 0, 'not idle long enough');
  s.clock.nowMs += 1;
  await s.pass();
  assert.deepEqual(indexedValues(only(s.fake.callsOf('StopInstances'), 'stop').params, 'InstanceId'), [id]);
  assert.equal((await s.table.getBuilder(id, 'linux/amd64'))?.draining, true, 'drained before it was stopped');
  assert.equal(s.fake.instance(id)?.state, 'stopped');
  assert.equal(s.fake.instance(id)?.tags.get(STOPPED_AT_TAG), new Date(s.clock.nowMs).toISOString());
  await s.halt(id, epoch);

  // The project builds again while the old builder record still holds its (drained) lease:
  // starting now would bring the agent back into that record, never placeable. It waits.
  s.clock.nowMs += 1_000;
  const waiting = await s.want('b-2', 'acme');
  assert.equal(waiting.state, 'pending');
  assert.equal(waiting.state === 'pending' && waiting.reason, 'starting');
  const early = await s.pass();
  assert.equal(s.fake.callsOf('StartInstances').length, 0);
  assert.ok(early.waiting.some((w) => /lapse/.test(w.reason)), JSON.stringify(early.waiting));

  s.clock.nowMs += BUILDER_LEASE_MS;
  await s.want('b-2', 'acme');
  await s.pass();
  assert.deepEqual(indexedValues(only(s.fake.callsOf('StartInstances'), 'start').params, 'InstanceId'), [id], 'the instance with the cache is started');
  assert.equal(s.fake.callsOf('RunInstances').length, 1, 'nothing new is launched');
  assert.equal(counted(s.metrics.builderStarts, { platform: 'linux/amd64', kind: 'warm' }), 1);
  await s.pass();
  assert.equal(s.fake.callsOf('StartInstances').length, 1, 'started once');

  epoch = await s.boot(id);
  const again = await s.want('b-2', 'acme');
  assertActive(again, id);
  assert.equal(again.warm, true);

  // Done again: stopped again, then kept for the retention time, then terminated.
  await s.table.endAllocation('b-2', 'linux/amd64', 'finished', 'done', s.clock.nowMs);
  s.clock.nowMs += IDLE_STOP_MS;
  await s.pass();
  assert.equal(s.fake.callsOf('StopInstances').length, 2);
  await s.halt(id, epoch);
  const stoppedAt = s.clock.nowMs;
  s.clock.nowMs = stoppedAt + RETENTION_MS - 1;
  await s.pass();
  assert.equal(s.fake.callsOf('TerminateInstances').length, 0, 'kept within retention');
  s.clock.nowMs = stoppedAt + RETENTION_MS;
  await s.pass();
  assert.deepEqual(indexedValues(only(s.fake.callsOf('TerminateInstances'), 'terminate').params, 'InstanceId'), [id]);
  assert.deepEqual(await s.table.boundBuilders('acme', 'linux/amd64'), [], 'the binding went with the cache');
  assert.equal(s.live().length, 0);
});

test('a stopped instance whose project is waiting is not terminated, however old', async (t) => {
  const s = await setup(t);
  await s.want('b-1', 'acme');
  await s.pass();
  const id = only(s.live(), 'instance').instanceId;
  const epoch = await s.boot(id);
  assertActive(await s.want('b-1', 'acme'), id);
  await s.table.endAllocation('b-1', 'linux/amd64', 'finished', 'done', s.clock.nowMs);
  s.clock.nowMs += IDLE_STOP_MS;
  await s.pass();
  await s.halt(id, epoch);
  // Retention passes in the very moment the project asks again: it is started, not terminated.
  s.clock.nowMs += RETENTION_MS;
  await s.want('b-2', 'acme');
  await s.pass();
  assert.equal(s.fake.callsOf('TerminateInstances').length, 0);
  assert.equal(s.fake.callsOf('StartInstances').length, 1);
});

test('warm pool: stopped unbound instances are kept per platform, claimed by a new project and replaced', async (t) => {
  const s = await setup(t, { warmPoolSize: 1, platforms: ['linux/amd64'] });
  await s.pass();
  const pool = only(s.live(), 'pool instance');
  assert.equal(pool.tags.get(PROJECT_TAG), undefined, 'a pool instance belongs to no project');
  assert.equal(pool.architecture, 'x86_64');
  await s.pass();
  assert.equal(s.fake.callsOf('RunInstances').length, 1, 'the booting pool instance counts');

  // Once its agent has registered (it boots fine), it is stopped and waits in the pool.
  const epoch = await s.boot(pool.instanceId);
  s.clock.nowMs += IDLE_STOP_MS;
  await s.pass();
  assert.equal(s.fake.instance(pool.instanceId)?.state, 'stopped');
  await s.halt(pool.instanceId, epoch);
  s.clock.nowMs += BUILDER_LEASE_MS;
  await s.pass();
  assert.equal(s.fake.callsOf('RunInstances').length, 1, 'the pool is full');
  s.clock.nowMs += 10 * RETENTION_MS;
  await s.pass();
  assert.equal(s.fake.callsOf('TerminateInstances').length, 0, 'pool instances hold no cache: retention leaves the pool alone');

  // A new project takes it: tagged (instance and volume), bound, started; the pool is refilled.
  assert.equal((await s.want('b-1', 'beta')).state, 'pending');
  await s.pass();
  const claimed = s.fake.instance(pool.instanceId)!;
  assert.equal(claimed.tags.get(PROJECT_TAG), 'beta');
  assert.equal(claimed.volumes[0]?.tags.get(PROJECT_TAG), 'beta');
  assert.deepEqual(await s.table.boundBuilders('beta', 'linux/amd64'), [pool.instanceId]);
  assert.equal(s.fake.callsOf('StartInstances').length, 1);
  assert.equal(counted(s.metrics.builderStarts, { platform: 'linux/amd64', kind: 'cold' }), 1);
  const launches = s.fake.callsOf('RunInstances');
  assert.equal(launches.length, 2, 'a replacement pool instance is launched');
  const replacement = s.live().find((i) => i.instanceId !== pool.instanceId)!;
  assert.equal(replacement.tags.get(PROJECT_TAG), undefined);
  await s.boot(pool.instanceId);
  assertActive(await s.want('b-1', 'beta'), pool.instanceId);
});

test('a pool instance whose drained builder record still holds its lease is not claimed: it would come back unplaceable', async (t) => {
  const s = await setup(t, { warmPoolSize: 1, platforms: ['linux/amd64'] });
  await s.pass();
  const pool = only(s.live(), 'pool instance');
  const epoch = await s.boot(pool.instanceId);
  s.clock.nowMs += IDLE_STOP_MS;
  await s.pass();
  assert.equal(s.fake.instance(pool.instanceId)?.state, 'stopped');
  await s.halt(pool.instanceId, epoch);
  await s.want('b-1', 'beta');
  await s.pass();
  assert.equal(s.fake.instance(pool.instanceId)?.tags.get(PROJECT_TAG), undefined, 'left in the pool');
  assert.equal(s.fake.callsOf('StartInstances').length, 0);
  const launched = only(
    s.live().filter((i) => i.tags.get(PROJECT_TAG) === 'beta'),
    'instance launched for beta',
  );
  assert.deepEqual(await s.table.boundBuilders('beta', 'linux/amd64'), [launched.instanceId]);
});

// Lets a test act between two provider calls of one pass.
class HookedFleet implements FleetProvider {
  readonly kind = 'ec2' as const;
  afterLaunch: (() => Promise<void>) | undefined;
  constructor(private readonly inner: FleetProvider) {}
  list(): Promise<FleetInstance[]> {
    return this.inner.list();
  }
  async launch(req: LaunchRequest): Promise<FleetInstance> {
    const inst = await this.inner.launch(req);
    const hook = this.afterLaunch;
    this.afterLaunch = undefined;
    await hook?.();
    return inst;
  }
  start(ids: readonly string[]): Promise<void> {
    return this.inner.start(ids);
  }
  stop(ids: readonly string[]): Promise<void> {
    return this.inner.stop(ids);
  }
  terminate(ids: readonly string[]): Promise<void> {
    return this.inner.terminate(ids);
  }
  setProject(id: string, project: string | undefined): Promise<void> {
    return this.inner.setProject(id, project);
  }
}

test('STALE_LEADER ends a pass at once: leadership lost mid-pass stops the next launch, and the new leader carries on', async (t) => {
  let hooked: HookedFleet | undefined;
  const s = await setup(t, {}, {}, (p) => (hooked = new HookedFleet(p)));
  await s.want('b-a', 'alpha');
  await s.want('b-b', 'beta');
  // A pauses after its first launch for longer than its lease; gw-b takes over meanwhile.
  const b = new LeaderElection({ table: s.table, name: NAME, holderId: 'gw-b', ttlMs: LEADER_TTL_MS, log, now: () => s.clock.nowMs });
  t.after(() => b.close());
  hooked!.afterLaunch = async () => {
    s.clock.nowMs += LEADER_TTL_MS + 1;
    await b.tick();
    assert.ok(b.token() !== undefined, 'gw-b leads');
  };
  const report = await s.pass();
  assert.equal(report.abortedBy?.code, 'STALE_LEADER');
  assert.equal(s.fake.callsOf('RunInstances').length, 1, 'the stale leader launched nothing more');
  assert.equal(counted(s.metrics.fleetActions, { action: 'launch', outcome: 'refused' }), 1);
  const first = only(s.live(), 'instance');
  assert.equal(first.tags.get(PROJECT_TAG), 'alpha');

  // A's next pass: it is not the leader any more and does nothing.
  await s.want('b-b', 'beta');
  const idle = await s.pass();
  assert.equal(idle.leader, false);
  assert.equal(s.fake.callsOf('DescribeInstances').length, 1);

  // B's reconciler sees alpha's instance booting and launches for beta only.
  const metricsB = createGatewayMetrics(() => [], () => []);
  const fleetB = new Ec2FleetProvider(
    parseEc2FleetConfig({ fleet: 'builders', region: 'us-east-1', endpoint: s.fake.url, launchTemplates: { 'linux/amd64': { id: AMD.id } } }),
    { credentials: { ...FAKE_EC2_CREDENTIALS }, now: () => s.clock.nowMs },
  );
  t.after(() => fleetB.close());
  const reconcilerB = new FleetReconciler({
    fleet: fleetB,
    table: s.table,
    election: b,
    leadershipName: NAME,
    platforms: ['linux/amd64'],
    idleStopMs: IDLE_STOP_MS,
    retentionMs: RETENTION_MS,
    warmPoolSize: 0,
    reconcileIntervalMs: 10_000,
    maxInstancesPerPlatform: 10,
    metrics: metricsB,
    log,
    now: () => s.clock.nowMs,
  });
  const byB = await reconcilerB.reconcileOnce();
  assert.equal(byB.abortedBy, undefined);
  assert.equal(s.fake.callsOf('RunInstances').length, 2);
  assert.deepEqual(s.live().map((i) => i.tags.get(PROJECT_TAG)).sort(), ['alpha', 'beta']);
  await reconcilerB.close();
});

test('throttling is survived: retried inside the provider, and a call still throttled fails alone while the pass goes on', async (t) => {
  const s = await setup(t, {}, { throttleMaxAttempts: 3 });
  await s.want('b-a', 'alpha');
  s.fake.throttleNext(2);
  const first = await s.pass();
  assert.equal(first.abortedBy, undefined);
  assert.equal(s.sleeps.length, 2, 'two backoffs');
  assert.equal(only(s.live(), 'instance').tags.get(PROJECT_TAG), 'alpha');

  // Every attempt of the next launch is throttled: that launch fails, the next demand is served.
  s.clock.nowMs += 1_000;
  await s.want('b-b', 'beta');
  await s.want('b-c', 'gamma');
  for (let i = 0; i < 3; i++) s.fake.failNext({ action: 'RunInstances', code: 'RequestLimitExceeded', message: 'Request limit exceeded.', status: 503 });
  const second = await s.pass();
  assert.equal(second.abortedBy, undefined);
  const failed = only(second.actions.filter((a) => a.outcome === 'failed'), 'failed action');
  assert.equal(failed.action, 'launch');
  assert.equal(failed.project, 'beta');
  assert.match(failed.reason ?? '', /throttled/);
  assert.equal(counted(s.metrics.fleetActions, { action: 'launch', outcome: 'failed' }), 1);
  assert.deepEqual(s.live().map((i) => i.tags.get(PROJECT_TAG)).sort(), ['alpha', 'gamma']);

  // The next pass launches beta, with the same ClientToken its throttled attempts carried.
  s.clock.nowMs += 1_000;
  await s.want('b-b', 'beta');
  await s.pass();
  assert.deepEqual(s.live().map((i) => i.tags.get(PROJECT_TAG)).sort(), ['alpha', 'beta', 'gamma']);
  const betaTokens = new Set(
    s.fake
      .callsOf('RunInstances')
      .filter((c) => Object.values(c.params).includes('beta'))
      .map((c) => c.params['ClientToken']),
  );
  assert.equal(betaTokens.size, 1, 'one ClientToken for the one demand');
});

test('the instance limit per platform holds', async (t) => {
  const s = await setup(t, { maxInstancesPerPlatform: 1 });
  await s.want('b-a', 'alpha');
  await s.want('b-b', 'beta');
  const report = await s.pass();
  assert.equal(s.fake.callsOf('RunInstances').length, 1);
  assert.ok(report.waiting.some((w) => w.project === 'beta' && /limit/.test(w.reason)), JSON.stringify(report.waiting));
});

test('tags and bindings are kept in agreement', async (t) => {
  const s = await setup(t, { platforms: ['linux/amd64'] });
  // A leader died between launching (tagged) and binding: the next pass binds from the tag.
  const orphan = await s.provider.launch({ platform: 'linux/amd64', project: 'acme', clientToken: 'orphan-1' });
  // A pool builder someone runs gets a build: acquire binds it in the table; the tag follows.
  const pooled = await s.provider.launch({ platform: 'linux/amd64', project: undefined, clientToken: 'pool-1' });
  await s.boot(pooled.instanceId);
  assertActive(await s.want('b-1', 'beta'), pooled.instanceId);
  await s.pass();
  assert.deepEqual(await s.table.boundBuilders('acme', 'linux/amd64'), [orphan.instanceId]);
  assert.equal(s.fake.instance(pooled.instanceId)?.tags.get(PROJECT_TAG), 'beta');
  assert.equal(s.fake.instance(pooled.instanceId)?.volumes[0]?.tags.get(PROJECT_TAG), 'beta');
  const before = s.fake.calls.length;
  await s.pass();
  assert.deepEqual(
    s.fake.calls.slice(before).map((c) => c.action),
    ['DescribeInstances'],
    'once they agree, a pass only looks',
  );
});

test('a replica that is not the leader does nothing at all', async (t) => {
  const s = await setup(t);
  await s.table.acquireLeadership(NAME, 'gw-other', s.clock.nowMs, LEADER_TTL_MS);
  await s.want('b-a', 'alpha');
  const report = await s.pass();
  assert.equal(report.leader, false);
  assert.equal(s.fake.calls.length, 0);
});

test("an untrusted build's throwaway builder is launched fresh and terminated (not stopped) as soon as its build ends, binding released", async (t) => {
  const s = await setup(t);
  const project = ephemeralProjectFor('acme', '00000000-0000-4000-8000-0000000000f0');
  assert.equal((await s.want('fork-build', project)).state, 'pending');
  await s.pass();
  const inst = only(s.live(), 'throwaway instance');
  assert.equal(inst.tags.get(PROJECT_TAG), project);
  const epoch = await s.boot(inst.instanceId);
  assertActive(await s.want('fork-build', project), inst.instanceId);
  // The build is still running: nothing happens to its builder.
  s.clock.nowMs += 1_000;
  await s.pass();
  assert.equal(s.fake.callsOf('TerminateInstances').length, 0);
  await s.table.endAllocation('fork-build', 'linux/amd64', 'finished', 'done', s.clock.nowMs);
  // Idle for far less than the idle-stop time, and yet: a throwaway builder is not kept.
  s.clock.nowMs += 1_000;
  await s.pass();
  assert.equal(s.fake.callsOf('StopInstances').length, 0, 'never stopped to be reused');
  assert.equal(s.fake.callsOf('TerminateInstances').length, 1);
  assert.deepEqual(await s.table.boundBuilders(project, 'linux/amd64'), [], 'its binding is released with it');
  assert.ok(epoch > 0);
});
