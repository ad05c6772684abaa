import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../src/config.js';
import { AgentError } from '../src/agentError.js';

const good = {
  SLIPWAY_GATEWAY: 'https://gw.example.com',
  SLIPWAY_AGENT_TOKEN: 'tok',
  SLIPWAY_UPSTREAM: 'dockerd:unix:///var/run/docker.sock',
  SLIPWAY_PLATFORM: 'linux/arm64',
};

test('a valid configuration, flags over environment', () => {
  const config = loadConfig(good, ['--max-streams', '12', '--label', 'zone=a', '--label', 'disk=nvme']);
  assert.equal(config.platform, 'linux/arm64');
  assert.equal(config.maxStreams, 12);
  assert.equal(config.upstream.kind, 'dockerd');
  assert.deepEqual(config.labels, { zone: 'a', disk: 'nvme' });
});

test('every problem is reported at once', () => {
  assert.throws(
    () => loadConfig({ SLIPWAY_GATEWAY: 'http://plain', SLIPWAY_PLATFORM: 'linux/s390x', SLIPWAY_UPSTREAM: 'podman:unix:///x', SLIPWAY_MAX_STREAMS: '0' }, ['--bogus', 'x']),
    (err: AgentError) => {
      assert.equal(err.code, 'CONFIG_INVALID');
      for (const part of ['https://', 'SLIPWAY_AGENT_TOKEN', 'linux/s390x', 'podman', 'SLIPWAY_MAX_STREAMS', '--bogus']) {
        assert.ok(err.message.includes(part), `mentions ${part}: ${err.message}`);
      }
      return true;
    },
  );
});
