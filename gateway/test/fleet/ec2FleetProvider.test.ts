// Ec2FleetProvider through the real @aws-sdk/client-ec2 against the fake EC2 server on a real socket.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../../src/gatewayError.js';
import { parseEc2FleetConfig } from '../../src/fleet/ec2FleetConfig.js';
import {
  Ec2FleetProvider,
  FLEET_TAG,
  isDryRunInstanceId,
  PLATFORM_TAG,
  PROJECT_TAG,
  STOPPED_AT_TAG,
} from '../../src/fleet/ec2FleetProvider.js';
import { FAKE_EC2_CREDENTIALS, FakeEc2Server, indexedStructs, indexedValues, type FakeEc2Options, type FakeLaunchTemplate } from '../support/index.js';

const AMD: FakeLaunchTemplate = { id: 'lt-0a1b2c3d4e5f60718', name: 'builder-amd64', architecture: 'x86_64', instanceType: 'c6id.xlarge' };
const ARM: FakeLaunchTemplate = { id: 'lt-0f1e2d3c4b5a69788', name: 'builder-arm64', architecture: 'arm64', instanceType: 'c7gd.xlarge', latestVersion: 2 };
const FLEET = 'builders';

interface Setup {
  fake: FakeEc2Server;
  provider: Ec2FleetProvider;
  sleeps: number[];
  clock: { nowMs: number };
}

async function setup(t: TestContext, settings: Record<string, unknown> = {}, fakeOptions: Partial<FakeEc2Options> = {}): Promise<Setup> {
  const fake = await FakeEc2Server.start({ templates: [AMD, ARM], ...fakeOptions });
  const config = parseEc2FleetConfig({
    fleet: FLEET,
    region: 'us-east-1',
    endpoint: fake.url,
    launchTemplates: {
      'linux/amd64': { id: AMD.id, version: '$Latest' },
      'linux/arm64': { name: ARM.name, version: 2 },
    },
    ...settings,
  });
  const sleeps: number[] = [];
  const clock = { nowMs: Date.parse('2026-11-27T10:00:00.000Z') };
  const provider = new Ec2FleetProvider(config, {
    credentials: { ...FAKE_EC2_CREDENTIALS },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    now: () => clock.nowMs,
  });
  t.after(async () => {
    provider.close();
    await fake.close();
  });
  return { fake, provider, sleeps, clock };
}

async function fleetFailure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
    assert.equal(err.code, 'FLEET_FAILED');
    return err.message;
  }
  assert.fail('expected FLEET_FAILED');
}

function includesAll(message: string, parts: readonly string[]): void {
  for (const part of parts) assert.ok(message.includes(part), `message mentions ${part}: ${message}`);
}

test('launch tags the instance and its volume for the project; the architecture is the platform template\'s', async (t) => {
  const { fake, provider } = await setup(t);
  const amd = await provider.launch({ platform: 'linux/amd64', project: 'acme', clientToken: 'alloc-1-amd64' });
  const arm = await provider.launch({ platform: 'linux/arm64', project: 'acme', clientToken: 'alloc-1-arm64' });

  assert.equal(amd.platform, 'linux/amd64');
  assert.equal(amd.project, 'acme');
  assert.equal(amd.state, 'pending');
  assert.equal(amd.stoppedAtMs, undefined);
  for (const [launched, template] of [[amd, AMD], [arm, ARM]] as const) {
    const inst = fake.instance(launched.instanceId)!;
    assert.equal(inst.architecture, template.architecture);
    assert.equal(inst.instanceType, template.instanceType);
    assert.equal(inst.launchTime.getTime(), launched.launchedAtMs);
    const expected = { [FLEET_TAG]: FLEET, [PLATFORM_TAG]: launched.platform, [PROJECT_TAG]: 'acme' };
    assert.deepEqual(Object.fromEntries(inst.tags), expected);
    assert.equal(inst.volumes.length, 1);
    assert.deepEqual(Object.fromEntries(inst.volumes[0]!.tags), expected);
  }

  const [first, second] = fake.callsOf('RunInstances');
  assert.equal(first?.params['LaunchTemplate.LaunchTemplateId'], AMD.id);
  assert.equal(first?.params['LaunchTemplate.Version'], '$Latest');
  assert.equal(second?.params['LaunchTemplate.LaunchTemplateName'], ARM.name);
  assert.equal(second?.params['LaunchTemplate.Version'], '2');
  assert.deepEqual([first?.params['MinCount'], first?.params['MaxCount'], first?.params['ClientToken']], ['1', '1', 'alloc-1-amd64']);
  assert.equal(first?.params['DryRun'], undefined);
  assert.deepEqual(indexedStructs(first!.params, 'TagSpecification').map((s) => s['ResourceType']), ['instance', 'volume']);
});

test('a pool launch carries no project tag; an instance type override goes to EC2', async (t) => {
  const { fake, provider } = await setup(t, {
    launchTemplates: { 'linux/amd64': { id: AMD.id, instanceType: 'c6id.2xlarge' } },
  });
  const pool = await provider.launch({ platform: 'linux/amd64', project: undefined, clientToken: 'pool-1' });
  assert.equal(pool.project, undefined);
  const inst = fake.instance(pool.instanceId)!;
  assert.equal(inst.tags.has(PROJECT_TAG), false);
  assert.equal(inst.volumes[0]!.tags.has(PROJECT_TAG), false);
  assert.equal(inst.instanceType, 'c6id.2xlarge');
  assert.equal(fake.callsOf('RunInstances')[0]?.params['LaunchTemplate.Version'], '$Default');

  const message = await fleetFailure(provider.launch({ platform: 'linux/arm64', project: undefined, clientToken: 'pool-2' }));
  includesAll(message, ['no launch template for linux/arm64', 'linux/amd64']);
});

test('launching twice with the same ClientToken yields one instance', async (t) => {
  const { fake, provider } = await setup(t);
  const req = { platform: 'linux/amd64', project: 'acme', clientToken: 'alloc-7' } as const;
  const first = await provider.launch(req);
  const again = await provider.launch(req);
  assert.equal(again.instanceId, first.instanceId);
  assert.equal(fake.instances().length, 1);
  assert.deepEqual(fake.callsOf('RunInstances').map((c) => c.params['ClientToken']), ['alloc-7', 'alloc-7']);
  assert.deepEqual((await provider.list()).map((i) => i.instanceId), [first.instanceId]);

  // A token longer than EC2 takes is hashed, the same way every time.
  const long = { platform: 'linux/arm64', project: undefined, clientToken: 'x'.repeat(100) } as const;
  const a = await provider.launch(long);
  const b = await provider.launch(long);
  assert.equal(a.instanceId, b.instanceId);
  assert.match(fake.callsOf('RunInstances').at(-1)!.params['ClientToken'] ?? '', /^[0-9a-f]{64}$/);
  assert.equal(fake.instances().length, 2);
});

test('stop records stopped-at and the state; start brings it back; terminate removes it from the list', async (t) => {
  const { fake, provider, clock } = await setup(t, {}, { transitionDelayMs: 'manual' });
  const launched = await provider.launch({ platform: 'linux/arm64', project: 'acme', clientToken: 'c1' });
  const id = launched.instanceId;
  assert.equal((await provider.list())[0]?.state, 'pending');
  fake.settle();
  assert.equal((await provider.list())[0]?.state, 'running');

  clock.nowMs = Date.parse('2026-11-27T11:30:00.000Z');
  await provider.stop([id]);
  let [listed] = await provider.list();
  assert.equal(listed?.state, 'stopping');
  assert.equal(listed?.stoppedAtMs, clock.nowMs);
  assert.equal(fake.instance(id)!.tags.get(STOPPED_AT_TAG), '2026-11-27T11:30:00.000Z');
  fake.settle();
  [listed] = await provider.list();
  assert.deepEqual(
    { state: listed?.state, stoppedAtMs: listed?.stoppedAtMs, project: listed?.project, platform: listed?.platform },
    { state: 'stopped', stoppedAtMs: clock.nowMs, project: 'acme', platform: 'linux/arm64' },
  );
  const tagCall = fake.callsOf('CreateTags').at(-1)!;
  assert.deepEqual(indexedValues(tagCall.params, 'ResourceId'), [id]);
  assert.deepEqual(indexedStructs(tagCall.params, 'Tag'), [{ Key: STOPPED_AT_TAG, Value: '2026-11-27T11:30:00.000Z' }]);

  await provider.start([id]);
  assert.equal((await provider.list())[0]?.state, 'pending');
  fake.settle();
  assert.equal((await provider.list())[0]?.state, 'running');
  assert.deepEqual(indexedValues(fake.callsOf('StartInstances')[0]!.params, 'InstanceId'), [id]);

  const volumeId = fake.instance(id)!.volumes[0]!.volumeId;
  await provider.terminate([id]);
  assert.equal((await provider.list())[0]?.state, 'shutting-down');
  fake.settle();
  assert.deepEqual(await provider.list(), []);
  assert.equal(fake.instance(id)!.state, 'terminated');
  assert.equal(fake.volume(volumeId), undefined);

  await provider.start([]);
  await provider.stop([]);
  await provider.terminate([]);
  assert.equal(fake.callsOf('StartInstances').length, 1, 'empty id lists send nothing');
});

test('list reads every page, keeps to its own fleet and leaves terminated instances out', async (t) => {
  const { fake, provider } = await setup(t, { describePageSize: 5 });
  const launched = new Set<string>();
  for (let i = 0; i < 12; i++) {
    const platform = i % 2 === 0 ? 'linux/amd64' : 'linux/arm64';
    launched.add((await provider.launch({ platform, project: i < 4 ? 'acme' : undefined, clientToken: `t-${i}` })).instanceId);
  }
  fake.seedInstance({ architecture: 'x86_64', tags: { [FLEET_TAG]: 'other-fleet', [PLATFORM_TAG]: 'linux/amd64' } });
  fake.seedInstance({ architecture: 'x86_64', state: 'terminated', tags: { [FLEET_TAG]: FLEET, [PLATFORM_TAG]: 'linux/amd64' } });

  const listed = await provider.list();
  assert.deepEqual(new Set(listed.map((i) => i.instanceId)), launched);
  assert.equal(listed.length, 12);
  assert.equal(listed.filter((i) => i.project === 'acme').length, 4);
  assert.ok(listed.every((i) => i.state === 'running'));

  const calls = fake.callsOf('DescribeInstances');
  assert.equal(calls.length, 3, 'twelve instances at five a page');
  assert.deepEqual(calls.map((c) => c.params['MaxResults']), ['5', '5', '5']);
  assert.equal(calls[0]!.params['NextToken'], undefined);
  assert.ok(calls[1]!.params['NextToken'] && calls[2]!.params['NextToken']);
  assert.deepEqual(indexedStructs(calls[0]!.params, 'Filter'), [
    { Name: `tag:${FLEET_TAG}`, 'Value.1': FLEET },
    { Name: 'instance-state-name', 'Value.1': 'pending', 'Value.2': 'running', 'Value.3': 'stopping', 'Value.4': 'stopped', 'Value.5': 'shutting-down' },
  ]);
});

test('list refuses an instance whose architecture contradicts its platform tag, or that has no platform tag', async (t) => {
  const { fake, provider } = await setup(t);
  await provider.launch({ platform: 'linux/amd64', project: undefined, clientToken: 'fine' });
  const wrong = fake.seedInstance({ architecture: 'arm64', tags: { [FLEET_TAG]: FLEET, [PLATFORM_TAG]: 'linux/amd64' } });
  includesAll(await fleetFailure(provider.list()), [wrong.instanceId, 'linux/amd64', 'architecture is arm64', 'not x86_64', AMD.id]);

  wrong.tags.set(PLATFORM_TAG, 'linux/arm64');
  assert.equal((await provider.list()).length, 2);
  wrong.tags.delete(PLATFORM_TAG);
  includesAll(await fleetFailure(provider.list()), [wrong.instanceId, `no ${PLATFORM_TAG} tag`]);
  wrong.tags.set(PLATFORM_TAG, 'windows/amd64');
  includesAll(await fleetFailure(provider.list()), [wrong.instanceId, "'windows/amd64'"]);
});

test('a launch template of the wrong architecture fails the launch with a message naming the template', async (t) => {
  const { provider } = await setup(t, { launchTemplates: { 'linux/arm64': { id: AMD.id } } });
  const message = await fleetFailure(provider.launch({ platform: 'linux/arm64', project: undefined, clientToken: 'mixup' }));
  includesAll(message, ['linux/arm64', 'architecture is x86_64', 'not arm64', `launch template ${AMD.id}`]);
});

test('throttling is retried with full-jitter exponential backoff and then succeeds', async (t) => {
  const { fake, provider, sleeps } = await setup(t, { throttleBaseDelayMs: 100, throttleMaxDelayMs: 300 });
  fake.throttleNext(4);
  const launched = await provider.launch({ platform: 'linux/amd64', project: 'acme', clientToken: 'busy' });
  assert.equal(fake.instances().length, 1);
  assert.equal(fake.instance(launched.instanceId)?.clientToken, 'busy');
  // random() is 0.5: half of min(cap, base * 2^n) for n = 0, 1, 2, 3.
  assert.deepEqual(sleeps, [50, 100, 150, 150]);
  assert.deepEqual(
    fake.callsOf('RunInstances').map((c) => [c.errorCode, c.params['ClientToken']]),
    [['RequestLimitExceeded', 'busy'], ['RequestLimitExceeded', 'busy'], ['RequestLimitExceeded', 'busy'], ['RequestLimitExceeded', 'busy'], [undefined, 'busy']],
  );

  // A 429 under another name is throttling too.
  fake.failNext({ code: 'SlowDown', message: 'easy', status: 429 });
  assert.equal((await provider.list()).length, 1);
  assert.equal(sleeps.length, 5);
});

test('throttling gives up with FLEET_FAILED after the configured attempts', async (t) => {
  const { fake, provider, sleeps } = await setup(t, { throttleMaxAttempts: 3 });
  const id = (await provider.launch({ platform: 'linux/amd64', project: undefined, clientToken: 'x' })).instanceId;
  fake.throttleNext(10);
  const message = await fleetFailure(provider.terminate([id]));
  includesAll(message, ['TerminateInstances', id, 'still throttled after 3 attempts', 'RequestLimitExceeded', 'Request limit exceeded.']);
  assert.equal(fake.callsOf('TerminateInstances').length, 3);
  assert.equal(sleeps.length, 2);
});

test('dry run: mutating calls carry DryRun and change nothing; a launch returns a marked synthetic instance', async (t) => {
  const { fake, provider } = await setup(t, { dryRun: true });
  const real = fake.seedInstance({ architecture: 'x86_64', tags: { [FLEET_TAG]: FLEET, [PLATFORM_TAG]: 'linux/amd64' } });

  const launched = await provider.launch({ platform: 'linux/arm64', project: 'acme', clientToken: 'dry-1' });
  assert.ok(isDryRunInstanceId(launched.instanceId), launched.instanceId);
  assert.deepEqual(
    { platform: launched.platform, project: launched.project, state: launched.state },
    { platform: 'linux/arm64', project: 'acme', state: 'pending' },
  );
  assert.equal((await provider.launch({ platform: 'linux/arm64', project: 'acme', clientToken: 'dry-1' })).instanceId, launched.instanceId);
  assert.equal(fake.instances().length, 1, 'nothing was launched');

  await provider.stop([real.instanceId, launched.instanceId]);
  await provider.start([real.instanceId]);
  await provider.setProject(real.instanceId, 'acme');
  await provider.setProject(real.instanceId, undefined);
  await provider.terminate([real.instanceId, launched.instanceId]);
  await provider.setProject(launched.instanceId, 'acme');
  await provider.start([launched.instanceId]);

  assert.equal(fake.instance(real.instanceId)!.state, 'running');
  assert.deepEqual(Object.fromEntries(fake.instance(real.instanceId)!.tags), { [FLEET_TAG]: FLEET, [PLATFORM_TAG]: 'linux/amd64' });
  const mutating = fake.calls.filter((c) => c.action !== 'DescribeInstances');
  assert.deepEqual(
    mutating.map((c) => [c.action, c.dryRun, c.errorCode]),
    [
      ['RunInstances', true, 'DryRunOperation'],
      ['RunInstances', true, 'DryRunOperation'],
      ['StopInstances', true, 'DryRunOperation'],
      ['CreateTags', true, 'DryRunOperation'],
      ['StartInstances', true, 'DryRunOperation'],
      ['CreateTags', true, 'DryRunOperation'],
      ['DeleteTags', true, 'DryRunOperation'],
      ['TerminateInstances', true, 'DryRunOperation'],
    ],
  );
  for (const c of fake.calls) {
    assert.ok(!Object.values(c.params).includes(launched.instanceId), 'synthetic ids never reach EC2');
  }
  // Reading is real even in a dry run.
  assert.ok(fake.callsOf('DescribeInstances').every((c) => !c.dryRun));
  assert.deepEqual((await provider.list()).map((i) => i.instanceId), [real.instanceId]);
});

test('dry run without the permission: FLEET_FAILED naming the missing permission', async (t) => {
  const { fake, provider } = await setup(t, { dryRun: true });
  const real = fake.seedInstance({ architecture: 'arm64', tags: { [FLEET_TAG]: FLEET, [PLATFORM_TAG]: 'linux/arm64' } });
  fake.deny('RunInstances');
  includesAll(await fleetFailure(provider.launch({ platform: 'linux/amd64', project: undefined, clientToken: 'd' })), [
    'RunInstances (dry run)',
    'lacks permission ec2:RunInstances',
    'UnauthorizedOperation',
  ]);
  fake.deny('StopInstances');
  includesAll(await fleetFailure(provider.stop([real.instanceId])), ['StopInstances (dry run)', real.instanceId, 'ec2:StopInstances', 'UnauthorizedOperation']);
  fake.deny('CreateTags');
  includesAll(await fleetFailure(provider.setProject(real.instanceId, 'acme')), ['CreateTags (dry run)', 'ec2:CreateTags']);
});

test('setProject claims a pool instance on the instance and its volumes, and returns it to the pool', async (t) => {
  const { fake, provider } = await setup(t);
  const pool = await provider.launch({ platform: 'linux/amd64', project: undefined, clientToken: 'pool' });
  const inst = fake.instance(pool.instanceId)!;
  const volumeId = inst.volumes[0]!.volumeId;

  await provider.setProject(pool.instanceId, 'acme');
  assert.equal(inst.tags.get(PROJECT_TAG), 'acme');
  assert.equal(fake.volume(volumeId)!.tags.get(PROJECT_TAG), 'acme');
  assert.equal((await provider.list())[0]?.project, 'acme');
  assert.deepEqual(indexedValues(fake.callsOf('CreateTags')[0]!.params, 'ResourceId'), [pool.instanceId, volumeId]);

  await provider.setProject(pool.instanceId, undefined);
  assert.equal(inst.tags.has(PROJECT_TAG), false);
  assert.equal(fake.volume(volumeId)!.tags.has(PROJECT_TAG), false);
  assert.equal((await provider.list())[0]?.project, undefined);
  assert.deepEqual(indexedStructs(fake.callsOf('DeleteTags')[0]!.params, 'Tag'), [{ Key: PROJECT_TAG }]);
});

test('setProject leaves instances of other fleets alone', async (t) => {
  const { fake, provider } = await setup(t);
  const stranger = fake.seedInstance({ architecture: 'x86_64', tags: { [FLEET_TAG]: 'someone-else' } });
  includesAll(await fleetFailure(provider.setProject(stranger.instanceId, 'acme')), [stranger.instanceId, `not part of fleet ${FLEET}`, "'someone-else'"]);
  assert.equal(stranger.tags.has(PROJECT_TAG), false);
  assert.equal(fake.callsOf('CreateTags').length, 0);
});

test('errors name the action, the instances or launch, and AWS\'s code and message; they are not retried', async (t) => {
  const { fake, provider, sleeps } = await setup(t);
  const missing = 'i-0123456789abcdef0';
  includesAll(await fleetFailure(provider.terminate([missing])), [
    'EC2 TerminateInstances',
    missing,
    'InvalidInstanceID.NotFound',
    `The instance ID '${missing}' does not exist`,
  ]);
  includesAll(await fleetFailure(provider.setProject(missing, 'acme')), ['DescribeInstances', missing, 'InvalidInstanceID.NotFound']);

  fake.failNext({ action: 'RunInstances', code: 'InsufficientInstanceCapacity', message: 'We currently do not have sufficient c6id.xlarge capacity.', status: 500 });
  includesAll(await fleetFailure(provider.launch({ platform: 'linux/amd64', project: 'acme', clientToken: 'cap' })), [
    'EC2 RunInstances',
    'linux/amd64',
    AMD.id,
    'client token cap',
    'InsufficientInstanceCapacity: We currently do not have sufficient c6id.xlarge capacity.',
  ]);
  assert.equal(fake.callsOf('RunInstances').length, 1);

  const id = (await provider.launch({ platform: 'linux/amd64', project: undefined, clientToken: 'ok' })).instanceId;
  fake.setTransitionDelay('manual');
  await provider.terminate([id]);
  includesAll(await fleetFailure(provider.start([id])), ['StartInstances', id, 'IncorrectInstanceState']);
  assert.deepEqual(sleeps, []);
});

test('an unreachable endpoint is FLEET_FAILED naming the action', async (t) => {
  const { fake, provider } = await setup(t);
  await fake.close();
  includesAll(await fleetFailure(provider.list()), ['EC2 DescribeInstances', `fleet ${FLEET}`, 'failed']);
});
