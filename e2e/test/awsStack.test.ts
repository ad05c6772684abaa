// The AWS deployment (deploy/aws): the CDK app is synthesized offline, as `cdk synth` runs it, and
// the CloudFormation template it writes is judged with aws-cdk-lib's own assertions: builders
// accept no inbound traffic and require IMDSv2, only TCP 443 is open to the internet, Redis
// requires TLS, and the gateways may touch only the EC2 instances of their fleet.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template, Match } from 'aws-cdk-lib/assertions';
import { loadConfig as loadGatewayConfig } from '@slipway/gateway';
import { runCommand } from '../src/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = path.join(REPO_ROOT, 'node_modules/.bin/tsx');
const FLEET = 'slipway-test';

type Json = Record<string, unknown>;
let dir: string;
let template: Template;
let resources: Record<string, { Type: string; Properties: Json }>;

const settings = {
  fleetName: FLEET,
  gatewayDomainName: 'slipway.example.com',
  gatewayBundle: { url: 'https://artifacts.example.com/gateway.tar', sha256: 'c'.repeat(64) },
  agentBundles: {
    amd64: { url: 'https://artifacts.example.com/agent-amd64.tar', sha256: 'a'.repeat(64) },
    arm64: { url: 'https://artifacts.example.com/agent-arm64.tar', sha256: 'b'.repeat(64) },
  },
  buildkitSha256: { amd64: 'd'.repeat(64), arm64: 'e'.repeat(64) },
};

async function synth(context: Json): Promise<{ code: number | null; stderr: string; outdir: string }> {
  const outdir = fs.mkdtempSync(path.join(dir, 'cdk.out-'));
  // What the cdk CLI hands its app: an output folder and the context (no account, no lookups).
  const result = await runCommand(TSX, [path.join(REPO_ROOT, 'deploy/aws/app.ts')], {
    cwd: path.join(REPO_ROOT, 'deploy/aws'),
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, CDK_OUTDIR: outdir, CDK_CONTEXT_JSON: JSON.stringify(context) },
    allowFailure: true,
    timeoutMs: 240_000,
  });
  return { code: result.code, stderr: result.stderr, outdir };
}

function ofType(type: string): Array<[string, Json]> {
  return Object.entries(resources)
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => [id, r.Properties]);
}

function logicalId(prefix: string): string {
  const id = Object.keys(resources).find((k) => k.startsWith(prefix));
  assert.ok(id, `no resource ${prefix}*`);
  return id;
}

// CloudFormation intrinsics as plain strings, so a rendered file can be read the way the VM will.
function flatten(value: unknown, placeholders: (ref: string) => string): string {
  if (typeof value === 'string') return value;
  const v = value as Json;
  if ('Fn::Join' in v) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => flatten(p, placeholders)).join(sep);
  }
  if ('Ref' in v) return placeholders(String(v['Ref']));
  if ('Fn::GetAtt' in v) return placeholders((v['Fn::GetAtt'] as string[]).join('.'));
  if ('Fn::Base64' in v) return flatten(v['Fn::Base64'], placeholders);
  throw new Error(`cannot flatten ${JSON.stringify(value).slice(0, 200)}`);
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-cdk-'));
  const { code, stderr, outdir } = await synth({ slipway: settings });
  assert.equal(code, 0, `synthesis failed:\n${stderr}`);
  const json = JSON.parse(fs.readFileSync(path.join(outdir, 'Slipway.template.json'), 'utf8')) as { Resources: typeof resources };
  resources = json.Resources;
  template = Template.fromJSON(json);
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

test('builders: security group with no inbound rule, and no rule elsewhere that points at it', () => {
  const builderSg = logicalId('BuilderSecurityGroup');
  template.hasResourceProperties('AWS::EC2::SecurityGroup', { GroupDescription: Match.stringLikeRegexp('Slipway builders'), SecurityGroupIngress: Match.absent() });
  for (const [id, props] of ofType('AWS::EC2::SecurityGroupIngress')) {
    assert.notDeepEqual(props['GroupId'], { 'Fn::GetAtt': [builderSg, 'GroupId'] }, `${id} opens the builders to inbound traffic`);
  }
  // The templates put builders in that group, and only that group.
  for (const [, props] of ofType('AWS::EC2::LaunchTemplate').filter(([id]) => id.startsWith('Builder'))) {
    const data = props['LaunchTemplateData'] as Json;
    assert.deepEqual((data['NetworkInterfaces'] as Json[]).map((n) => n['Groups']), [[{ 'Fn::GetAtt': [builderSg, 'GroupId'] }]]);
    assert.equal(data['SecurityGroupIds'], undefined);
    assert.equal((data['NetworkInterfaces'] as Json[])[0]?.['AssociatePublicIpAddress'], false);
  }
});

test('launch templates: amd64 and arm64 builders on NVMe instance types, IMDSv2 required everywhere, builders without a role', () => {
  const all = ofType('AWS::EC2::LaunchTemplate');
  assert.ok(all.length >= 3);
  for (const [id, props] of all) {
    const metadata = (props['LaunchTemplateData'] as Json)['MetadataOptions'] as Json | undefined;
    assert.equal(metadata?.['HttpTokens'], 'required', `${id} does not require IMDSv2`);
    assert.equal(metadata?.['HttpPutResponseHopLimit'], 1, `${id} lets containers reach IMDS`);
  }
  const builders = all.filter(([id]) => id.startsWith('Builder'));
  assert.deepEqual(builders.map(([id]) => id.replace(/Template.*/, '')).sort(), ['BuilderAmd64', 'BuilderArm64']);
  for (const [id, props] of builders) {
    const data = props['LaunchTemplateData'] as Json;
    // Local NVMe: the instance family's attributes include d (c6id, c7gd, m6gd, ...).
    assert.match(String(data['InstanceType']), /^[a-z]+\d+[a-z-]*d[a-z-]*\.[a-z0-9]+$/, `${id}: ${String(data['InstanceType'])} has no local NVMe`);
    assert.equal(data['IamInstanceProfile'], undefined, `${id}: builders need no AWS role`);
    const arch = id.startsWith('BuilderAmd64') ? 'amd64' : 'arm64';
    const userData = flatten(data['UserData'], (ref) => ref);
    assert.match(userData, /^#cloud-config/);
    assert.match(userData, /--identity imds/);
    assert.match(userData, new RegExp(`SLIPWAY_ARCH=${arch}`));
    // The image parameter is the architecture's own.
    const imageRef = String((data['ImageId'] as Json)['Ref']);
    const parameter = (template.toJSON() as { Parameters: Record<string, { Default: string }> }).Parameters[imageRef];
    assert.match(parameter?.Default ?? '', new RegExp(`/${arch}$`));
    // The cache volume survives stop/start, encrypted.
    const cache = (data['BlockDeviceMappings'] as Json[]).find((m) => m['DeviceName'] === '/dev/sdf');
    assert.equal((cache?.['Ebs'] as Json | undefined)?.['Encrypted'], true);
  }
});

test('only TCP 443 is open to the internet: one listener, and every world-open rule is 443', () => {
  const worldOpen = (rule: Json): boolean => rule['CidrIp'] === '0.0.0.0/0' || rule['CidrIpv6'] === '::/0';
  const rules: Json[] = [
    ...ofType('AWS::EC2::SecurityGroup').flatMap(([, p]) => (p['SecurityGroupIngress'] as Json[] | undefined) ?? []),
    ...ofType('AWS::EC2::SecurityGroupIngress').map(([, p]) => p),
  ];
  const open = rules.filter(worldOpen);
  assert.ok(open.length > 0, 'nothing is reachable at all');
  for (const rule of open) assert.deepEqual([rule['IpProtocol'], rule['FromPort'], rule['ToPort']], ['tcp', 443, 443], `world-open rule ${JSON.stringify(rule)}`);
  // Redis answers the gateways only.
  const redisRules = ofType('AWS::EC2::SecurityGroupIngress').filter(([, p]) => p['FromPort'] === 6379);
  assert.equal(redisRules.length, 1);
  assert.deepEqual(redisRules[0]![1]['SourceSecurityGroupId'], { 'Fn::GetAtt': [logicalId('GatewaySecurityGroup'), 'GroupId'] });

  const loadBalancers = ofType('AWS::ElasticLoadBalancingV2::LoadBalancer');
  assert.equal(loadBalancers.length, 1);
  assert.equal(loadBalancers[0]![1]['Type'], 'network');
  assert.equal(loadBalancers[0]![1]['Scheme'], 'internet-facing');
  const listeners = ofType('AWS::ElasticLoadBalancingV2::Listener');
  assert.deepEqual(listeners.map(([, p]) => [p['Port'], p['Protocol']]), [[443, 'TCP']]);
});

test('the network load balancer passes TCP 443 to a gateway Auto Scaling group in two availability zones, health-checked on /readyz', () => {
  template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
    Port: 443,
    Protocol: 'TCP',
    TargetType: 'instance',
    HealthCheckProtocol: 'HTTPS',
    HealthCheckPath: '/readyz',
  });
  const [, lb] = ofType('AWS::ElasticLoadBalancingV2::LoadBalancer')[0]!;
  assert.equal((lb['Subnets'] as unknown[]).length, 2);
  const [[asgId, asg]] = ofType('AWS::AutoScaling::AutoScalingGroup') as [[string, Json]];
  assert.equal((asg['VPCZoneIdentifier'] as unknown[]).length, 2, 'gateways are not spread over two zones');
  assert.ok(Number(asg['MinSize']) >= 2);
  const targetGroup = logicalId('LoadBalancerTlsGatewaysGroup');
  assert.deepEqual(asg['TargetGroupARNs'], [{ Ref: targetGroup }]);
  // Two subnets in different zones: Fn::GetAZs index 0 and 1.
  const zones = ofType('AWS::EC2::Subnet').map(([, p]) => JSON.stringify(p['AvailabilityZone']));
  assert.equal(new Set(zones).size, 2);
  // Rolling upgrades: one replica at a time, never fewer in service.
  const policy = (template.toJSON() as { Resources: Record<string, { UpdatePolicy?: Json }> }).Resources[asgId]?.UpdatePolicy?.['AutoScalingRollingUpdate'] as Json;
  assert.equal(policy['MaxBatchSize'], 1);
  assert.equal(String(policy['MinInstancesInService']), String(asg['MinSize']));
  // The load balancer keeps a deregistered gateway's connections at least as long as it drains.
  const [, tg] = ofType('AWS::ElasticLoadBalancingV2::TargetGroup')[0]!;
  const delay = (tg['TargetGroupAttributes'] as Json[]).find((a) => a['Key'] === 'deregistration_delay.timeout_seconds');
  assert.ok(Number(delay?.['Value']) >= 300);
});

test('Redis (ElastiCache) requires TLS, and the gateways use rediss://', () => {
  template.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
    TransitEncryptionEnabled: true,
    TransitEncryptionMode: 'required',
    AtRestEncryptionEnabled: true,
    MultiAZEnabled: true,
  });
  const [, gatewayTemplate] = ofType('AWS::EC2::LaunchTemplate').find(([id]) => id.startsWith('GatewayTemplate'))!;
  const userData = flatten((gatewayTemplate['LaunchTemplateData'] as Json)['UserData'], (ref) => `<${ref}>`);
  assert.match(userData, /^      SLIPWAY_REDIS_URL=rediss:\/\/<Redis\.PrimaryEndPoint\.Address>:<Redis\.PrimaryEndPoint\.Port>$/m);
});

test("the gateway's IAM allows exactly the fleet's EC2 calls, and changes only instances and volumes tagged with its fleet", () => {
  // The calls the fleet provider makes, read from its source: a new call without a policy fails here.
  const provider = fs.readFileSync(path.join(REPO_ROOT, 'gateway/src/fleet/ec2FleetProvider.ts'), 'utf8');
  const union = /type Ec2Action =([^;]+);/.exec(provider)?.[1] ?? '';
  const calls = [...union.matchAll(/'(\w+)'/g)].map((m) => `ec2:${m[1]}`).sort();
  assert.ok(calls.length >= 7, `found only ${calls.join(', ')} in ec2FleetProvider.ts`);

  const statements = ofType('AWS::IAM::Policy')
    .filter(([, p]) => ((p['Roles'] as Json[]) ?? []).some((r) => String(r['Ref']).startsWith('GatewayRole')))
    .flatMap(([, p]) => (p['PolicyDocument'] as { Statement: Json[] }).Statement);
  const actionsOf = (s: Json): string[] => [s['Action']].flat() as string[];
  const ec2Statements = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('ec2:')));
  assert.deepEqual([...new Set(ec2Statements.flatMap(actionsOf))].sort(), calls);
  for (const s of statements) {
    assert.equal(s['Effect'], 'Allow');
    for (const action of actionsOf(s)) assert.ok(!action.includes('*'), `wildcard action ${action}`);
    assert.ok(!actionsOf(s).includes('iam:PassRole'), 'builders have no role to pass');
  }

  const resourcesOf = (s: Json): string[] => [s['Resource']].flat().map((r) => JSON.stringify(r));
  const onInstancesOrVolumes = (s: Json): boolean => resourcesOf(s).some((r) => /:(instance|volume)\/\*/.test(r));
  const fleetCondition = (s: Json): boolean => {
    const equals = ((s['Condition'] as Json | undefined)?.['StringEquals'] ?? {}) as Record<string, unknown>;
    return equals[`aws:ResourceTag/slipway:fleet`] === FLEET || equals[`aws:RequestTag/slipway:fleet`] === FLEET;
  };
  for (const s of ec2Statements) {
    if (actionsOf(s).includes('ec2:DescribeInstances')) {
      assert.deepEqual(actionsOf(s), ['ec2:DescribeInstances'], 'only DescribeInstances may go unconditioned on *');
      continue;
    }
    if (onInstancesOrVolumes(s)) {
      assert.ok(fleetCondition(s), `statement ${String(s['Sid'])} on instances/volumes is not limited to fleet ${FLEET}: ${JSON.stringify(s['Condition'])}`);
    } else {
      // RunInstances also needs the template, subnet, security group, interface and image it uses.
      assert.deepEqual(actionsOf(s), ['ec2:RunInstances']);
      assert.ok(!resourcesOf(s).includes('"*"'));
    }
  }
  // Start, stop and terminate: tagged instances only; retagging cannot touch the fleet tag itself.
  const manage = ec2Statements.find((s) => actionsOf(s).includes('ec2:TerminateInstances'))!;
  assert.deepEqual((manage['Condition'] as Json)['StringEquals'], { 'aws:ResourceTag/slipway:fleet': FLEET });
  const retag = ec2Statements.find((s) => actionsOf(s).includes('ec2:DeleteTags'))!;
  assert.deepEqual(((retag['Condition'] as Json)['ForAllValues:StringEquals'] as Json)['aws:TagKeys'], ['slipway:project', 'slipway:stopped-at']);
});

test("the gateway VM's environment is one the gateway's real loadConfig accepts (ec2 fleet, Redis, instance identity)", () => {
  const [, gatewayTemplate] = ofType('AWS::EC2::LaunchTemplate').find(([id]) => id.startsWith('GatewayTemplate'))!;
  const placeholders: Record<string, string> = {
    'AWS::Region': 'eu-west-1',
    'AWS::AccountId': '123456789012',
    'AWS::Partition': 'aws',
  };
  const userData = flatten((gatewayTemplate['LaunchTemplateData'] as Json)['UserData'], (ref) => {
    if (ref in placeholders) return placeholders[ref]!;
    if (ref.endsWith('.LatestVersionNumber')) return '3';
    if (ref.startsWith('Builder')) return `lt-0${ref.startsWith('BuilderAmd64') ? 'a' : 'b'}23456789abcdef0`;
    if (ref.endsWith('PrimaryEndPoint.Address')) return 'redis.example.internal';
    if (ref.endsWith('PrimaryEndPoint.Port')) return '6379';
    return `placeholder-${ref}`;
  });
  const envBlock = /path: "\/etc\/slipway\/gateway\.env"[\s\S]*?content: \|\n((?: {6}.*\n|\n)+)/.exec(userData)?.[1];
  assert.ok(envBlock, 'the gateway user data writes no /etc/slipway/gateway.env');
  const env: Record<string, string> = {};
  for (const line of envBlock.split('\n')) {
    const m = /^ {6}([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!;
  }
  // gateway-secrets adds these at each start.
  env['SLIPWAY_GATEWAY_ID'] = 'i-0123456789abcdef0';
  env['SLIPWAY_INTERNAL_URL'] = 'https://ip-10-0-2-17.eu-west-1.compute.internal:443';
  const config = loadGatewayConfig(env, []);
  assert.equal(config.fleet.kind, 'ec2');
  assert.equal(config.fleet.ec2?.fleetName, FLEET);
  assert.ok(config.redis?.url.startsWith('rediss://'));
  assert.equal(config.listenPort, 443);
  assert.deepEqual(config.awsAccounts, ['123456789012']);
  assert.equal(config.requireInstanceIdentity, true);
  assert.deepEqual(Object.keys(config.fleet.ec2?.launchTemplates ?? {}).sort(), ['linux/amd64', 'linux/arm64']);
  // The drain the gateway is told about is what the load balancer and systemd wait for.
  const unit = fs.readFileSync(path.join(REPO_ROOT, 'deploy/aws/gateway/slipway-gateway.service'), 'utf8');
  const stopMinutes = Number(/^TimeoutStopSec=(\d+)min$/m.exec(unit)?.[1]);
  assert.ok(stopMinutes * 60_000 > config.shutdownGraceMs);
});

test('synthesis refuses placeholders for the artifacts, naming each', async () => {
  const { code, stderr } = await synth({ slipway: { ...settings, buildkitSha256: { amd64: 'REPLACE_ME', arm64: 'e'.repeat(64) } } });
  assert.notEqual(code, 0);
  assert.match(stderr, /buildkit\.sha256 must be 64 lowercase hex digits/);
});
