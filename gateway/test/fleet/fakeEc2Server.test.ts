// The fake EC2 server against the real SDK: every call the fleet provider makes must serialize and
// parse as it would against AWS, or the provider's tests prove nothing.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  CreateTagsCommand,
  DeleteTagsCommand,
  DescribeInstancesCommand,
  EC2Client,
  paginateDescribeInstances,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type DescribeInstancesCommandInput,
  type Instance,
  type RunInstancesCommandInput,
} from '@aws-sdk/client-ec2';
import { FakeEc2Server, indexedValues, type FakeEc2Options, type FakeLaunchTemplate } from '../support/index.js';

const AMD: FakeLaunchTemplate = { id: 'lt-0a1b2c3d4e5f60718', name: 'builder-amd64', architecture: 'x86_64', instanceType: 'c6id.xlarge' };
const ARM: FakeLaunchTemplate = { id: 'lt-0f1e2d3c4b5a69788', name: 'builder-arm64', architecture: 'arm64', instanceType: 'c7gd.xlarge', latestVersion: 3 };

async function setup(t: TestContext, options: Partial<FakeEc2Options> = {}): Promise<{ fake: FakeEc2Server; ec2: EC2Client }> {
  const fake = await FakeEc2Server.start({ templates: [AMD, ARM], ...options });
  const ec2 = new EC2Client(fake.clientConfig());
  t.after(async () => {
    ec2.destroy();
    await fake.close();
  });
  return { fake, ec2 };
}

async function launch(ec2: EC2Client, extra: Partial<RunInstancesCommandInput> = {}): Promise<Instance> {
  const out = await ec2.send(
    new RunInstancesCommand({ LaunchTemplate: { LaunchTemplateId: AMD.id, Version: '$Latest' }, MinCount: 1, MaxCount: 1, ...extra }),
  );
  return out.Instances![0]!;
}

async function rejection(promise: Promise<unknown>): Promise<{ name: string; message: string; status: number | undefined }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, message: e.message, status: e.$metadata?.httpStatusCode };
  }
  assert.fail('expected the call to fail');
}

async function stateOf(ec2: EC2Client, instanceId: string): Promise<string | undefined> {
  const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  return out.Reservations?.[0]?.Instances?.[0]?.State?.Name;
}

test('RunInstances from a template by name and version: type override, count, tags on instance and volume, architecture of the template', async (t) => {
  const { fake, ec2 } = await setup(t);
  const out = await ec2.send(
    new RunInstancesCommand({
      LaunchTemplate: { LaunchTemplateName: ARM.name, Version: '2' },
      InstanceType: 'c7gd.2xlarge',
      MinCount: 2,
      MaxCount: 2,
      TagSpecifications: [
        { ResourceType: 'instance', Tags: [{ Key: 'role', Value: 'builder' }] },
        { ResourceType: 'volume', Tags: [{ Key: 'role', Value: 'cache' }] },
      ],
    }),
  );
  assert.match(out.ReservationId ?? '', /^r-[0-9a-f]{17}$/);
  assert.equal(out.Instances?.length, 2);
  for (const inst of out.Instances ?? []) {
    assert.equal(inst.Architecture, 'arm64');
    assert.equal(inst.InstanceType, 'c7gd.2xlarge');
    assert.equal(inst.State?.Name, 'pending');
    assert.equal(inst.State?.Code, 0);
    assert.deepEqual(inst.Tags, [{ Key: 'role', Value: 'builder' }]);
    assert.ok(inst.LaunchTime instanceof Date);
    const volumeId = inst.BlockDeviceMappings?.[0]?.Ebs?.VolumeId;
    assert.match(volumeId ?? '', /^vol-/);
    assert.deepEqual([...fake.volume(volumeId!)!.tags], [['role', 'cache']]);
  }
  const [call] = fake.callsOf('RunInstances');
  assert.equal(call?.params['LaunchTemplate.LaunchTemplateName'], ARM.name);
  assert.equal(call?.params['LaunchTemplate.Version'], '2');
  assert.equal(call?.params['TagSpecification.2.ResourceType'], 'volume');
});

test('RunInstances refuses unknown templates and versions with EC2 codes', async (t) => {
  const { ec2 } = await setup(t);
  const byId = await rejection(launch(ec2, { LaunchTemplate: { LaunchTemplateId: 'lt-00000000000000000' } }));
  assert.equal(byId.name, 'InvalidLaunchTemplateId.NotFound');
  assert.equal(byId.status, 400);
  const byName = await rejection(launch(ec2, { LaunchTemplate: { LaunchTemplateName: 'nope' } }));
  assert.equal(byName.name, 'InvalidLaunchTemplateName.NotFoundException');
  const version = await rejection(launch(ec2, { LaunchTemplate: { LaunchTemplateName: ARM.name, Version: '4' } }));
  assert.equal(version.name, 'InvalidLaunchTemplateId.VersionNotFound');
});

test('ClientToken: a repeat returns the same reservation and starts nothing; other arguments are a mismatch', async (t) => {
  const { fake, ec2 } = await setup(t);
  const first = await launch(ec2, { ClientToken: 'build-1' });
  const again = await launch(ec2, { ClientToken: 'build-1' });
  assert.equal(again.InstanceId, first.InstanceId);
  assert.equal(again.ClientToken, 'build-1');
  assert.equal(again.State?.Name, 'running', 'the repeat reports the instance as it is now');
  assert.equal(fake.instances().length, 1);
  const mismatch = await rejection(launch(ec2, { ClientToken: 'build-1', InstanceType: 'c6id.large' }));
  assert.equal(mismatch.name, 'IdempotentParameterMismatch');
  assert.equal(fake.instances().length, 1);
});

test('manual transitions: every intermediate state is observable until settle()', async (t) => {
  const { fake, ec2 } = await setup(t, { transitionDelayMs: 'manual' });
  const id = (await launch(ec2)).InstanceId!;
  assert.equal(await stateOf(ec2, id), 'pending');
  assert.equal((await rejection(ec2.send(new StopInstancesCommand({ InstanceIds: [id] })))).name, 'IncorrectInstanceState');
  fake.settle(id);
  assert.equal(await stateOf(ec2, id), 'running');

  const stopped = await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
  assert.deepEqual(stopped.StoppingInstances?.[0]?.PreviousState, { Code: 16, Name: 'running' });
  assert.deepEqual(stopped.StoppingInstances?.[0]?.CurrentState, { Code: 64, Name: 'stopping' });
  assert.equal((await rejection(ec2.send(new StartInstancesCommand({ InstanceIds: [id] })))).name, 'IncorrectInstanceState');
  fake.settle();
  assert.equal(await stateOf(ec2, id), 'stopped');

  const started = await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
  assert.equal(started.StartingInstances?.[0]?.CurrentState?.Name, 'pending');
  fake.settle();
  assert.equal(await stateOf(ec2, id), 'running');

  const volumeId = fake.instance(id)!.volumes[0]!.volumeId;
  const terminated = await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
  assert.equal(terminated.TerminatingInstances?.[0]?.CurrentState?.Name, 'shutting-down');
  assert.equal(await stateOf(ec2, id), 'shutting-down');
  fake.settle();
  assert.equal(await stateOf(ec2, id), 'terminated');
  assert.equal(fake.volume(volumeId), undefined, 'the root volume goes with the instance');
});

test('a transition delay settles by the fake clock', async (t) => {
  let nowMs = 1_000_000;
  const { ec2 } = await setup(t, { transitionDelayMs: 30_000, now: () => nowMs });
  const id = (await launch(ec2)).InstanceId!;
  nowMs += 29_999;
  assert.equal(await stateOf(ec2, id), 'pending');
  nowMs += 1;
  assert.equal(await stateOf(ec2, id), 'running');
});

test('DescribeInstances: tag, tag-key, wildcard and state filters, instance ids, unknown ids and filters', async (t) => {
  const { fake, ec2 } = await setup(t);
  const a = await launch(ec2, { TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'fleet', Value: 'blue-1' }] }] });
  const b = await launch(ec2, { TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'fleet', Value: 'blue-2' }, { Key: 'extra', Value: '' }] }] });
  const c = await launch(ec2, { TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'fleet', Value: 'green' }] }] });
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [c.InstanceId!] }));

  const ids = async (input: DescribeInstancesCommandInput): Promise<string[]> => {
    const out = await ec2.send(new DescribeInstancesCommand(input));
    return (out.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => i.InstanceId!)).sort();
  };
  assert.deepEqual(await ids({ Filters: [{ Name: 'tag:fleet', Values: ['blue-1'] }] }), [a.InstanceId]);
  assert.deepEqual(await ids({ Filters: [{ Name: 'tag:fleet', Values: ['blue-*'] }] }), [a.InstanceId, b.InstanceId].sort());
  assert.deepEqual(await ids({ Filters: [{ Name: 'tag:fleet', Values: ['blue-?', 'green'] }] }), [a.InstanceId, b.InstanceId, c.InstanceId].sort());
  assert.deepEqual(await ids({ Filters: [{ Name: 'tag-key', Values: ['extra'] }] }), [b.InstanceId]);
  assert.deepEqual(
    await ids({ Filters: [{ Name: 'tag:fleet', Values: ['*'] }, { Name: 'instance-state-name', Values: ['terminated'] }] }),
    [c.InstanceId],
  );
  assert.deepEqual(await ids({ InstanceIds: [b.InstanceId!, a.InstanceId!] }), [a.InstanceId, b.InstanceId].sort());
  assert.deepEqual(indexedValues(fake.callsOf('DescribeInstances').at(-1)!.params, 'InstanceId'), [b.InstanceId, a.InstanceId]);

  assert.equal((await rejection(ids({ InstanceIds: ['i-0123456789abcdef0'] }))).name, 'InvalidInstanceID.NotFound');
  assert.equal((await rejection(ids({ InstanceIds: ['bogus'] }))).name, 'InvalidInstanceID.Malformed');
  assert.equal((await rejection(ids({ Filters: [{ Name: 'flavour', Values: ['x'] }] }))).name, 'InvalidParameterValue');
  assert.equal((await rejection(ids({ InstanceIds: [a.InstanceId!], MaxResults: 5 }))).name, 'InvalidParameterCombination');
  assert.equal((await rejection(ids({ MaxResults: 4 }))).name, 'InvalidParameterValue');
});

test('DescribeInstances pages with MaxResults and NextToken, and the SDK paginator walks every page', async (t) => {
  const { fake, ec2 } = await setup(t);
  await launch(ec2, { MinCount: 7, MaxCount: 7 });
  await launch(ec2, { MinCount: 5, MaxCount: 5 });
  const seen: string[] = [];
  let pages = 0;
  for await (const page of paginateDescribeInstances({ client: ec2, pageSize: 5 }, {})) {
    pages++;
    const onPage = (page.Reservations ?? []).flatMap((r) => r.Instances ?? []);
    assert.ok(onPage.length <= 5);
    seen.push(...onPage.map((i) => i.InstanceId!));
  }
  assert.equal(pages, 3);
  assert.deepEqual(seen.sort(), fake.instances().map((i) => i.instanceId).sort());
  const calls = fake.callsOf('DescribeInstances');
  assert.equal(calls[0]?.params['MaxResults'], '5');
  assert.equal(calls[0]?.params['NextToken'], undefined);
  assert.ok(calls[1]?.params['NextToken']);
  // A page boundary inside a reservation splits it: the second page holds the 7th instance of
  // the first reservation and three of the second.
  const second = await ec2.send(new DescribeInstancesCommand({ MaxResults: 5, NextToken: calls[1]!.params['NextToken'] }));
  assert.deepEqual(second.Reservations?.map((r) => r.Instances?.length), [2, 3]);

  const stale = await rejection(ec2.send(new DescribeInstancesCommand({ MaxResults: 6, NextToken: calls[1]!.params['NextToken'] })));
  assert.equal(stale.name, 'InvalidParameterValue', 'a token belongs to the query that produced it');
});

test('CreateTags and DeleteTags on instances and volumes: conditional delete, delete-all, unknown resources', async (t) => {
  const { fake, ec2 } = await setup(t);
  const inst = await launch(ec2);
  const id = inst.InstanceId!;
  const volumeId = inst.BlockDeviceMappings![0]!.Ebs!.VolumeId!;
  await ec2.send(new CreateTagsCommand({ Resources: [id, volumeId], Tags: [{ Key: 'a', Value: '1' }, { Key: 'b', Value: '2' }, { Key: 'c' }] }));
  assert.deepEqual(Object.fromEntries(fake.instance(id)!.tags), { a: '1', b: '2', c: '' });
  assert.deepEqual(Object.fromEntries(fake.volume(volumeId)!.tags), { a: '1', b: '2', c: '' });

  await ec2.send(new DeleteTagsCommand({ Resources: [id, volumeId], Tags: [{ Key: 'a', Value: 'other' }, { Key: 'b' }] }));
  assert.deepEqual(Object.fromEntries(fake.instance(id)!.tags), { a: '1', c: '' }, 'a value that does not match keeps the tag');
  await ec2.send(new DeleteTagsCommand({ Resources: [volumeId] }));
  assert.equal(fake.volume(volumeId)!.tags.size, 0);

  assert.equal((await rejection(ec2.send(new CreateTagsCommand({ Resources: ['vol-0123456789abcdef0'], Tags: [{ Key: 'a', Value: '1' }] })))).name, 'InvalidVolume.NotFound');
  assert.equal((await rejection(ec2.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: 'aws:x', Value: '1' }] })))).name, 'InvalidParameterValue');
});

test('values with XML metacharacters, tabs and line breaks round-trip through the SDK', async (t) => {
  const { fake, ec2 } = await setup(t);
  const value = `a&b<c>"d'e\tf\r\ng ü ]]> &amp;`;
  const inst = await launch(ec2, { TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'k<&>', Value: value }] }] });
  assert.deepEqual(inst.Tags, [{ Key: 'k<&>', Value: value }]);
  assert.equal(fake.instance(inst.InstanceId!)!.tags.get('k<&>'), value);
});

test('DryRun on every action: DryRunOperation (412) when allowed and nothing changes; UnauthorizedOperation (403) when denied', async (t) => {
  const { fake, ec2 } = await setup(t);
  const id = (await launch(ec2)).InstanceId!;
  await ec2.send(new DescribeInstancesCommand({})); // settles the launch
  const calls: [string, () => Promise<unknown>][] = [
    ['RunInstances', () => launch(ec2, { DryRun: true })],
    ['StartInstances', () => ec2.send(new StartInstancesCommand({ InstanceIds: [id], DryRun: true }))],
    ['StopInstances', () => ec2.send(new StopInstancesCommand({ InstanceIds: [id], DryRun: true }))],
    ['TerminateInstances', () => ec2.send(new TerminateInstancesCommand({ InstanceIds: [id], DryRun: true }))],
    ['DescribeInstances', () => ec2.send(new DescribeInstancesCommand({ DryRun: true }))],
    ['CreateTags', () => ec2.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: 'x', Value: 'y' }], DryRun: true }))],
    ['DeleteTags', () => ec2.send(new DeleteTagsCommand({ Resources: [id], Tags: [{ Key: 'x' }], DryRun: true }))],
  ];
  for (const [action, call] of calls) {
    const allowed = await rejection(call());
    assert.deepEqual([allowed.name, allowed.status], ['DryRunOperation', 412], action);
    fake.deny(action);
    const denied = await rejection(call());
    assert.deepEqual([denied.name, denied.status], ['UnauthorizedOperation', 403], action);
    fake.allow(action);
  }
  assert.equal(fake.instances().length, 1);
  assert.equal(fake.instance(id)!.state, 'running');
  assert.equal(fake.instance(id)!.tags.size, 0);
  assert.equal(fake.calls.filter((c) => c.dryRun).length, 14);

  fake.deny('TerminateInstances');
  assert.equal((await rejection(ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })))).name, 'UnauthorizedOperation');
  assert.equal(fake.instance(id)!.state, 'running');
});

test('throttleNext and failNext answer instead of the action, and the call log records it', async (t) => {
  const { fake, ec2 } = await setup(t);
  fake.throttleNext(2);
  for (let i = 0; i < 2; i++) {
    const throttled = await rejection(ec2.send(new DescribeInstancesCommand({})));
    assert.deepEqual([throttled.name, throttled.status], ['RequestLimitExceeded', 503]);
  }
  await ec2.send(new DescribeInstancesCommand({}));
  fake.failNext({ action: 'RunInstances', code: 'InsufficientInstanceCapacity', message: 'no c6id today', status: 500 });
  await ec2.send(new DescribeInstancesCommand({}));
  const failed = await rejection(launch(ec2));
  assert.deepEqual([failed.name, failed.message, failed.status], ['InsufficientInstanceCapacity', 'no c6id today', 500]);
  assert.equal(fake.instances().length, 0);
  assert.deepEqual(
    fake.calls.map((c) => [c.action, c.status, c.errorCode]),
    [
      ['DescribeInstances', 503, 'RequestLimitExceeded'],
      ['DescribeInstances', 503, 'RequestLimitExceeded'],
      ['DescribeInstances', 200, undefined],
      ['DescribeInstances', 200, undefined],
      ['RunInstances', 500, 'InsufficientInstanceCapacity'],
    ],
  );
});

test('raw protocol: EC2 error envelope, unsigned requests, unknown actions and versions', async (t) => {
  const { fake } = await setup(t);
  const post = async (body: string, signed = true): Promise<{ status: number; text: string }> => {
    const res = await fetch(fake.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(signed ? { authorization: 'AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0' } : {}),
      },
      body,
    });
    return { status: res.status, text: await res.text() };
  };
  const unsigned = await post('Action=DescribeInstances&Version=2016-11-15', false);
  assert.equal(unsigned.status, 401);
  assert.match(unsigned.text, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<Response><Errors><Error><Code>AuthFailure<\/Code><Message>[^<]+<\/Message><\/Error><\/Errors><RequestID>[0-9a-f-]+<\/RequestID><\/Response>$/);
  assert.match((await post('Action=RebootInstances&Version=2016-11-15')).text, /<Code>InvalidAction<\/Code>/);
  assert.match((await post('Action=DescribeInstances&Version=2014-01-01')).text, /<Code>NoSuchVersion<\/Code>/);
  const ok = await post('Action=DescribeInstances&Version=2016-11-15');
  assert.equal(ok.status, 200);
  assert.match(ok.text, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<DescribeInstancesResponse xmlns="http:\/\/ec2\.amazonaws\.com\/doc\/2016-11-15\/"><requestId>[0-9a-f-]+<\/requestId><reservationSet><\/reservationSet><\/DescribeInstancesResponse>$/);
});
