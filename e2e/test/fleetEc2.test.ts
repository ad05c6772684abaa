// The EC2 fleet end to end: a real gateway on a real Redis, the fleet reconciler (led through the
// table's leadership) driving the fake EC2 endpoint through the real AWS SDK, and a small VM
// simulator that boots an in-process agent on every instance the fake reports running and shuts
// it down when the instance stops. Times are short (idle 1 s, retention 2.5 s, passes every
// 200 ms); every wait below is bounded and only waits for a state, never measures one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createLogger, type Platform } from '@slipway/proto';
import { RedisRoutingTable } from '@slipway/gateway';
import { FAKE_EC2_CREDENTIALS, FakeEc2Server, type FakeEc2Instance, type FakeLaunchTemplate } from '@slipway/gateway/test-support';
import type { Agent } from '@slipway/agent';
import { parseEc2FleetConfig } from '../../gateway/src/fleet/ec2FleetConfig.js';
import { Ec2FleetProvider, PROJECT_TAG } from '../../gateway/src/fleet/ec2FleetProvider.js';
import { LeaderElection } from '../../gateway/src/fleet/leaderElection.js';
import { FleetReconciler } from '../../gateway/src/fleet/fleetReconciler.js';
import {
  startRedis,
  startStack,
  startEchoServer,
  gatewayApi,
  waitFor,
  waitForAsync,
  type RedisServer,
  type SlipwayStack,
  type EchoServer,
} from '@slipway/e2e';

const log = createLogger('fleet', process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent');
const AMD: FakeLaunchTemplate = { id: 'lt-0a1b2c3d4e5f60718', name: 'builder-amd64', architecture: 'x86_64', instanceType: 'c6id.xlarge' };
const ARM: FakeLaunchTemplate = { id: 'lt-0f1e2d3c4b5a69788', name: 'builder-arm64', architecture: 'arm64', instanceType: 'c7gd.xlarge' };
const LEADERSHIP = 'fleet:e2e';
const IDLE_STOP_MS = 1_000;
const RETENTION_MS = 2_500;
// Long enough for everything the tests wait on, on a busy 2-core machine.
const WAIT_MS = 30_000;

// What a VM's boot script does: start an agent whose id is the instance id and whose platform is
// the CPU's. Its shutdown takes the agent with it.
class VmSimulator {
  readonly boots: string[] = [];
  readonly halts: string[] = [];
  readonly errors: unknown[] = [];
  private readonly agents = new Map<string, Agent>();
  private readonly timer: NodeJS.Timeout;
  private polling: Promise<void> | undefined;

  constructor(
    private readonly fake: FakeEc2Server,
    private readonly stack: SlipwayStack,
    private readonly upstream: string,
  ) {
    this.timer = setInterval(() => {
      this.polling ??= this.sync()
        .catch((err: unknown) => {
          this.errors.push(err);
        })
        .finally(() => {
          this.polling = undefined;
        });
    }, 50);
  }

  private async sync(): Promise<void> {
    for (const inst of this.fake.instances()) {
      const agent = this.agents.get(inst.instanceId);
      if (inst.state === 'running' && agent === undefined) {
        const platform: Platform = inst.architecture === 'arm64' ? 'linux/arm64' : 'linux/amd64';
        const booted = await this.stack.startAgent({ agentId: inst.instanceId, instanceId: inst.instanceId, platform, upstream: this.upstream });
        this.agents.set(inst.instanceId, booted);
        this.boots.push(inst.instanceId);
      } else if (agent !== undefined && inst.state !== 'running' && inst.state !== 'pending') {
        this.agents.delete(inst.instanceId);
        this.stack.agents.delete(inst.instanceId);
        await agent.close();
        this.halts.push(inst.instanceId);
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.polling;
    await Promise.all([...this.agents.values()].map((a) => a.close()));
    this.agents.clear();
  }
}

interface Acquired {
  buildId: string;
  token: string;
  agentId: string;
  warm: boolean;
}

// Creates a build and acquires a builder as the CLI does, polling while the answer is pending.
async function build(stack: SlipwayStack, project: string, platform: Platform): Promise<Acquired> {
  const created = await gatewayApi<{ buildId: string; token: string }>(stack, 'POST', '/v1/builds', await stack.clientToken(project), { platforms: [platform] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { buildId, token } = created.body;
  const pending = new Set<string>();
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const answer = await gatewayApi<{ state: string; reason?: string; builder?: { agentId: string }; warm?: boolean }>(
      stack,
      'POST',
      `/v1/builds/${buildId}/acquire`,
      token,
      { platform },
    );
    if (answer.body.state === 'active') return { buildId, token, agentId: answer.body.builder!.agentId, warm: answer.body.warm === true };
    assert.equal(answer.body.state, 'pending', `acquire answered ${answer.status} ${JSON.stringify(answer.body)}`);
    pending.add(answer.body.reason ?? '?');
    if (Date.now() > deadline) assert.fail(`build ${buildId} of ${project} still pending (${[...pending].join(', ')}) after ${WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function finish(stack: SlipwayStack, b: Acquired): Promise<void> {
  const answer = await gatewayApi(stack, 'POST', `/v1/builds/${b.buildId}/finish`, b.token, {});
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
}

let redis: RedisServer;
let echo: EchoServer;
let fake: FakeEc2Server;
let table: RedisRoutingTable;
let stack: SlipwayStack;
let provider: Ec2FleetProvider;
let election: LeaderElection;
let reconciler: FleetReconciler;
let vms: VmSimulator;

before(async () => {
  redis = await startRedis();
  echo = await startEchoServer();
  fake = await FakeEc2Server.start({ templates: [AMD, ARM] });
  table = new RedisRoutingTable({ client: new Redis(redis.url, { maxRetriesPerRequest: 1 }), keyPrefix: `fleet${process.pid}:` });
  // The gateway lets builds wait for the fleet; a builder lease of 1.5 s lets a stopped VM's
  // drained record lapse quickly, so its restart is not held up for long.
  stack = await startStack({ table, gatewayId: 'gw-fleet', canProvision: () => true, builderLeaseMs: 1_500 });
  provider = new Ec2FleetProvider(
    parseEc2FleetConfig({
      fleet: 'e2e',
      region: 'us-east-1',
      endpoint: fake.url,
      launchTemplates: { 'linux/amd64': { id: AMD.id }, 'linux/arm64': { name: ARM.name } },
    }),
    { credentials: { ...FAKE_EC2_CREDENTIALS } },
  );
  election = new LeaderElection({ table, name: LEADERSHIP, holderId: 'gw-fleet', ttlMs: 3_000, log });
  reconciler = new FleetReconciler({
    fleet: provider,
    table,
    election,
    leadershipName: LEADERSHIP,
    platforms: ['linux/amd64', 'linux/arm64'],
    idleStopMs: IDLE_STOP_MS,
    retentionMs: RETENTION_MS,
    warmPoolSize: 0,
    reconcileIntervalMs: 200,
    maxInstancesPerPlatform: 4,
    metrics: stack.gateway.metrics,
    log,
    fenceMarginMs: 1_000,
  });
  vms = new VmSimulator(fake, stack, `buildkitd:${echo.address}`);
  await election.start();
  reconciler.start();
});

after(async () => {
  await reconciler?.close();
  await election?.close();
  await vms?.close();
  provider?.close();
  await stack?.close();
  await table?.close();
  await fake?.close();
  await echo?.close();
  await redis?.stop();
});

function instanceOf(id: string): FakeEc2Instance {
  const inst = fake.instance(id);
  assert.ok(inst, `the fake knows instance ${id}`);
  return inst;
}

test('a new project gets an instance launched for it, stopped when idle, started again (same instance, warm) for its next build, and terminated after retention', async () => {
  // 1. A build for a project nobody has seen: the fleet launches an arm64 instance for it, and
  //    once its agent has registered the build is placed there.
  const first = await build(stack, 'acme', 'linux/arm64');
  const launches = fake.callsOf('RunInstances');
  assert.equal(launches.length, 1, 'one launch for the one build');
  const id = first.agentId;
  const inst = instanceOf(id);
  assert.equal(inst.architecture, 'arm64');
  assert.equal(inst.launchTemplateId, ARM.id);
  assert.equal(inst.tags.get(PROJECT_TAG), 'acme');
  await waitFor(() => vms.boots.length === 1, WAIT_MS, 'the boot recorded');
  assert.deepEqual(vms.boots, [id], 'the build runs on the agent of the launched instance');
  assert.deepEqual(await table.boundBuilders('acme', 'linux/arm64'), [id]);

  // 2. The build finishes; a second later the builder is drained and its instance stopped.
  await finish(stack, first);
  await waitFor(() => instanceOf(id).state === 'stopped', WAIT_MS, `instance ${id} stopped`);
  await waitFor(() => vms.halts.includes(id), WAIT_MS, 'its agent shut down with it');
  assert.equal(fake.callsOf('TerminateInstances').length, 0);

  // 3. The project builds again: the same instance (its disk holds the cache) is started, and the
  //    build lands on it as a warm placement. Nothing new is launched.
  const second = await build(stack, 'acme', 'linux/arm64');
  assert.equal(second.agentId, id, 'the same instance');
  assert.equal(second.warm, true);
  assert.equal(fake.callsOf('RunInstances').length, 1, 'no second launch');
  assert.equal(fake.callsOf('StartInstances').length, 1);
  // The simulator records a boot once its agent's registration has been seen, which may be after
  // the gateway has already placed the build on that agent.
  await waitFor(() => vms.boots.length === 2, WAIT_MS, 'the second boot recorded');
  assert.deepEqual(vms.boots, [id, id]);
  const metrics = stack.gateway.metrics.registry.render();
  assert.match(metrics, /slipway_builder_starts_total\{kind="warm",platform="linux\/arm64"\} 1\b/);
  assert.match(metrics, /slipway_builder_starts_total\{kind="cold",platform="linux\/arm64"\} 1\b/);

  // 4. Finished and idle again: stopped, and after the retention time terminated, its binding
  //    (the project's claim on that cache) released.
  await finish(stack, second);
  await waitFor(() => vms.halts.filter((h) => h === id).length === 2, WAIT_MS, `instance ${id} stopped again`);
  await waitFor(() => instanceOf(id).state === 'terminated', WAIT_MS, `instance ${id} terminated after retention`);
  await waitForAsync(async () => (await table.boundBuilders('acme', 'linux/arm64')).length === 0, WAIT_MS, 'the binding released');
  assert.equal(fake.callsOf('RunInstances').length, 1);
  assert.deepEqual(vms.errors, []);
});
