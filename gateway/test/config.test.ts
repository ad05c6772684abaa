import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../src/config.js';
import { GatewayError } from '../src/gatewayError.js';

test('defaults: port 443 on all interfaces, 5 s heartbeats with a 15 s timeout', () => {
  const config = loadConfig({ SLIPWAY_TLS_CERT: 'c.pem', SLIPWAY_TLS_KEY: 'k.pem', SLIPWAY_TOKEN_JWKS: 'j.json' });
  assert.equal(config.listenPort, 443);
  assert.equal(config.listenHost, '0.0.0.0');
  assert.equal(config.heartbeatIntervalMs, 5_000);
  assert.equal(config.heartbeatTimeoutMs, 15_000);
});

test('flags win over the environment, including bracketed IPv6', () => {
  const config = loadConfig({ SLIPWAY_TLS_CERT: 'c.pem', SLIPWAY_TLS_KEY: 'k.pem', SLIPWAY_TOKEN_JWKS: 'j.json', SLIPWAY_LISTEN: '1.2.3.4:1' }, ['--listen', '[::1]:8443']);
  assert.equal(config.listenHost, '::1');
  assert.equal(config.listenPort, 8443);
});

test('every problem is reported at once', () => {
  assert.throws(
    () => loadConfig({ SLIPWAY_LISTEN: 'nope', SLIPWAY_HEARTBEAT_INTERVAL_MS: '20000', SLIPWAY_LOG_LEVEL: 'loud' }),
    (err: GatewayError) => {
      assert.equal(err.code, 'CONFIG_INVALID');
      for (const part of ['SLIPWAY_TLS_CERT', 'SLIPWAY_TLS_KEY', 'SLIPWAY_TOKEN_JWKS', 'SLIPWAY_LISTEN', 'must exceed', 'SLIPWAY_LOG_LEVEL']) {
        assert.ok(err.message.includes(part), `mentions ${part}: ${err.message}`);
      }
      return true;
    },
  );
});

const REQUIRED = { SLIPWAY_TLS_CERT: 'c.pem', SLIPWAY_TLS_KEY: 'k.pem', SLIPWAY_TOKEN_JWKS: 'j.json' };
const SHARED = { ...REQUIRED, SLIPWAY_REDIS_URL: 'redis://redis:6379', SLIPWAY_SIGNING_KEY: 'signing.jwk.json' };

function problemsOf(env: Record<string, string>, argv: string[] = []): string {
  try {
    loadConfig(env, argv);
  } catch (err) {
    assert.ok(err instanceof GatewayError);
    assert.equal(err.code, 'CONFIG_INVALID');
    return err.message;
  }
  assert.fail('expected CONFIG_INVALID');
}

test('fleet defaults: local agents, nothing to launch; the lifecycle settings have their defaults', () => {
  const { fleet } = loadConfig(REQUIRED);
  assert.deepEqual(fleet, {
    kind: 'local',
    ec2: undefined,
    idleStopMs: 600_000,
    cacheRetentionMs: 7 * 86_400_000,
    warmPoolSize: 0,
    reconcileIntervalMs: 10_000,
    maxInstancesPerPlatform: 20,
  });
});

test('an ec2 fleet from flags and environment: launch templates as ID_OR_NAME[:VERSION], region from AWS_REGION, --fleet-dry-run', () => {
  const { fleet } = loadConfig(
    {
      ...SHARED,
      AWS_REGION: 'eu-west-1',
      SLIPWAY_EC2_FLEET_NAME: 'builders',
      SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64: 'lt-0a1b2c3d4e5f60718:7',
      SLIPWAY_EC2_INSTANCE_TYPE_AMD64: 'c6id.2xlarge',
      SLIPWAY_IDLE_STOP_MS: '120000',
      SLIPWAY_INSTANCE_IDENTITY_CERTS: '/etc/slipway/aws-certs.json',
      SLIPWAY_AWS_ACCOUNTS: '123456789012',
    },
    [
      '--fleet', 'ec2',
      '--fleet-dry-run',
      '--ec2-launch-template-arm64', 'builders/arm64',
      '--ec2-endpoint', 'http://127.0.0.1:4566',
      '--warm-pool-size', '2',
      '--cache-retention-ms', '86400000',
      '--reconcile-interval-ms', '5000',
      '--max-instances-per-platform', '8',
    ],
  );
  assert.equal(fleet.kind, 'ec2');
  assert.equal(fleet.idleStopMs, 120_000);
  assert.equal(fleet.cacheRetentionMs, 86_400_000);
  assert.equal(fleet.warmPoolSize, 2);
  assert.equal(fleet.reconcileIntervalMs, 5_000);
  assert.equal(fleet.maxInstancesPerPlatform, 8);
  assert.equal(fleet.ec2?.fleetName, 'builders');
  assert.equal(fleet.ec2?.region, 'eu-west-1');
  assert.equal(fleet.ec2?.endpoint, 'http://127.0.0.1:4566');
  assert.equal(fleet.ec2?.dryRun, true);
  assert.deepEqual(fleet.ec2?.launchTemplates, {
    'linux/amd64': { launchTemplateId: 'lt-0a1b2c3d4e5f60718', launchTemplateName: undefined, version: '7', instanceType: 'c6id.2xlarge' },
    'linux/arm64': { launchTemplateId: undefined, launchTemplateName: 'builders/arm64', version: '$Default', instanceType: undefined },
  });
});

test('SLIPWAY_EC2_REGION wins over AWS_REGION; the EC2 settings are not required for a local fleet', () => {
  const { fleet } = loadConfig({
    ...SHARED,
    SLIPWAY_FLEET: 'ec2',
    AWS_REGION: 'eu-west-1',
    SLIPWAY_EC2_REGION: 'us-east-2',
    SLIPWAY_EC2_FLEET_NAME: 'b',
    SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64: 'amd64-builders:$Latest',
    SLIPWAY_REQUIRE_INSTANCE_IDENTITY: 'false',
  });
  assert.equal(fleet.ec2?.region, 'us-east-2');
  assert.equal(fleet.ec2?.launchTemplates['linux/amd64']?.version, '$Latest');
  assert.equal(loadConfig({ ...REQUIRED, SLIPWAY_FLEET: 'local' }).fleet.ec2, undefined);
});

test('an ec2 fleet without Redis, name, region or launch template: every problem at once, named by its variable', () => {
  const message = problemsOf({ ...REQUIRED, SLIPWAY_FLEET: 'ec2' });
  for (const part of [
    'SLIPWAY_FLEET=ec2 needs SLIPWAY_REDIS_URL',
    'shared routing table',
    'SLIPWAY_EC2_FLEET_NAME must be',
    'SLIPWAY_EC2_REGION (or AWS_REGION) must be an AWS region',
    'SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64 and/or SLIPWAY_EC2_LAUNCH_TEMPLATE_ARM64',
  ]) {
    assert.ok(message.includes(part), `mentions ${part}: ${message}`);
  }
});

test('bad fleet settings are each reported, with the gateway\'s other problems', () => {
  const message = problemsOf(
    {
      ...SHARED,
      SLIPWAY_LOG_LEVEL: 'loud',
      SLIPWAY_EC2_FLEET_NAME: 'fleet*',
      SLIPWAY_EC2_REGION: 'moon-1',
      SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64: 'lt-0a1b2c3d4e5f60718:v2',
      SLIPWAY_EC2_INSTANCE_TYPE_AMD64: 'HUGE',
      SLIPWAY_EC2_INSTANCE_TYPE_ARM64: 'c7g.large',
      SLIPWAY_EC2_THROTTLE_MAX_ATTEMPTS: '50',
      SLIPWAY_FLEET_DRY_RUN: 'perhaps',
      SLIPWAY_IDLE_STOP_MS: '10',
      SLIPWAY_RECONCILE_INTERVAL_MS: 'often',
      SLIPWAY_WARM_POOL_SIZE: '5',
      SLIPWAY_MAX_INSTANCES_PER_PLATFORM: '3',
    },
    ['--fleet', 'ec2'],
  );
  for (const part of [
    'SLIPWAY_LOG_LEVEL',
    "SLIPWAY_EC2_FLEET_NAME must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit; got 'fleet*'",
    "SLIPWAY_EC2_REGION (or AWS_REGION) must be an AWS region such as us-east-1; got 'moon-1'",
    "SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64: version must be a version number, $Default or $Latest; got 'v2'",
    "SLIPWAY_EC2_INSTANCE_TYPE_AMD64 must be an instance type like c6id.xlarge; got 'HUGE'",
    'SLIPWAY_EC2_INSTANCE_TYPE_ARM64 needs the launch template it overrides (SLIPWAY_EC2_LAUNCH_TEMPLATE_ARM64)',
    'SLIPWAY_EC2_THROTTLE_MAX_ATTEMPTS must be an integer from 1 to 20',
    "SLIPWAY_FLEET_DRY_RUN must be true or false; got 'perhaps'",
    "SLIPWAY_IDLE_STOP_MS must be an integer from 1000 to 86400000; got '10'",
    "SLIPWAY_RECONCILE_INTERVAL_MS must be an integer from 100 to 600000; got 'often'",
    'SLIPWAY_WARM_POOL_SIZE (5) must not exceed SLIPWAY_MAX_INSTANCES_PER_PLATFORM (3)',
  ]) {
    assert.ok(message.includes(part), `mentions ${part}: ${message}`);
  }
  assert.match(problemsOf({ ...REQUIRED, SLIPWAY_FLEET: 'gcp' }), /SLIPWAY_FLEET must be one of local, ec2; got 'gcp'/);
});

test('an ec2 fleet requires instance identity certificates and accounts unless told otherwise; rates and the identity file are checked', () => {
  const message = problemsOf({
    ...SHARED,
    SLIPWAY_FLEET: 'ec2',
    SLIPWAY_EC2_FLEET_NAME: 'b',
    SLIPWAY_EC2_REGION: 'eu-west-1',
    SLIPWAY_EC2_LAUNCH_TEMPLATE_AMD64: 'lt-1',
    SLIPWAY_AWS_ACCOUNTS: '12345,abc',
    SLIPWAY_RATE_OPENS_PER_TOKEN: 'lots',
    SLIPWAY_IDENTITY_FILE: '/tmp/identity.json',
  });
  assert.match(message, /SLIPWAY_INSTANCE_IDENTITY_CERTS is required/);
  assert.match(message, /SLIPWAY_AWS_ACCOUNTS must be 12-digit account ids; got '12345', 'abc'/);
  assert.match(message, /SLIPWAY_RATE_OPENS_PER_TOKEN must be BURST\/PER_SECOND/);
  assert.match(message, /SLIPWAY_IDENTITY_FILE is for a gateway without Redis/);
  const ok = loadConfig({ ...REQUIRED, SLIPWAY_RATE_AUTH_PER_ADDRESS: '10/2.5', SLIPWAY_MAX_STREAMS_PER_TOKEN: '7' });
  assert.deepEqual(ok.limits.authPerAddress, { capacity: 10, refillPerSec: 2.5 });
  assert.equal(ok.limits.maxStreamsPerToken, 7);
  assert.equal(ok.requireInstanceIdentity, false);
});
