import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEc2FleetConfig, readEc2FleetConfig } from '../../src/fleet/ec2FleetConfig.js';
import { GatewayError } from '../../src/gatewayError.js';

test('minimal settings take the defaults', () => {
  const config = parseEc2FleetConfig({
    fleet: 'builders',
    region: 'eu-west-1',
    launchTemplates: { 'linux/amd64': { id: 'lt-0a1b2c3d4e5f60718' } },
  });
  assert.deepEqual(config, {
    fleetName: 'builders',
    region: 'eu-west-1',
    endpoint: undefined,
    dryRun: false,
    launchTemplates: {
      'linux/amd64': { launchTemplateId: 'lt-0a1b2c3d4e5f60718', launchTemplateName: undefined, version: '$Default', instanceType: undefined },
    },
    throttleMaxAttempts: 8,
    throttleBaseDelayMs: 200,
    throttleMaxDelayMs: 20_000,
    describePageSize: 500,
  });
});

test('numbers and booleans may arrive as strings, as from the environment', () => {
  const config = parseEc2FleetConfig({
    fleet: 'b-1',
    region: 'us-gov-west-1',
    endpoint: 'http://127.0.0.1:4566',
    dryRun: 'true',
    launchTemplates: {
      'linux/amd64': { name: 'builders/amd64', version: '$Latest', instanceType: 'c6id.2xlarge' },
      'linux/arm64': { name: 'builders-arm64', version: 12 },
    },
    throttleMaxAttempts: '3',
    throttleBaseDelayMs: '50',
    throttleMaxDelayMs: 5000,
    describePageSize: '5',
  });
  assert.equal(config.dryRun, true);
  assert.equal(config.endpoint, 'http://127.0.0.1:4566');
  assert.deepEqual(config.launchTemplates['linux/arm64'], {
    launchTemplateId: undefined,
    launchTemplateName: 'builders-arm64',
    version: '12',
    instanceType: undefined,
  });
  assert.equal(config.launchTemplates['linux/amd64']?.instanceType, 'c6id.2xlarge');
  assert.deepEqual(
    [config.throttleMaxAttempts, config.throttleBaseDelayMs, config.throttleMaxDelayMs, config.describePageSize],
    [3, 50, 5000, 5],
  );
});

test('every problem is reported at once', () => {
  assert.throws(
    () =>
      parseEc2FleetConfig({
        fleet: 'blue*',
        region: 'mars',
        endpoint: 'ftp://x',
        dryRun: 'maybe',
        launchTemplates: {
          'linux/amd64': { id: 'lt-0a1b2c3d4e5f60718', name: 'both' },
          'linux/arm64': { version: '$Newest', instanceType: 'big', colour: 'red' },
          'windows/amd64': { id: 'lt-0a1b2c3d4e5f60718' },
        },
        throttleMaxAttempts: 0,
        throttleBaseDelayMs: 1000,
        throttleMaxDelayMs: 10,
        describePageSize: 2000,
        extra: true,
      }),
    (err: GatewayError) => {
      assert.equal(err.code, 'CONFIG_INVALID');
      for (const part of [
        '.fleet',
        '.region',
        '.endpoint',
        '.dryRun',
        "['linux/amd64'] takes id or name, not both",
        "['linux/arm64'] needs id or name",
        "['linux/arm64'].version",
        "['linux/arm64'].instanceType",
        "unknown setting 'colour'",
        "unknown platform 'windows/amd64'",
        '.throttleMaxAttempts',
        'must be at least throttleBaseDelayMs',
        '.describePageSize',
        "unknown setting 'extra'",
      ]) {
        assert.ok(err.message.includes(part), `mentions ${part}: ${err.message}`);
      }
      return true;
    },
  );
});

test('readEc2FleetConfig adds to the caller\'s problems, so loadConfig can report them with its own', () => {
  const problems = ['SLIPWAY_TLS_CERT is required'];
  readEc2FleetConfig(undefined, problems, 'SLIPWAY_FLEET_EC2');
  readEc2FleetConfig({ fleet: 'b', region: 'us-east-1', launchTemplates: {} }, problems, 'SLIPWAY_FLEET_EC2');
  assert.equal(problems.length, 3);
  assert.match(problems[1]!, /^SLIPWAY_FLEET_EC2: expected an object/);
  assert.match(problems[2]!, /^SLIPWAY_FLEET_EC2\.launchTemplates must name a launch template/);
});
