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

test('one gateway URL and one link by default', () => {
  const config = loadConfig(good);
  assert.deepEqual(config.gatewayUrls.map((u) => u.href), ['https://gw.example.com/']);
  assert.equal(config.gatewayLinks, 1);
});

test('several gateway URLs: comma-separated in the environment, or the flag repeated', () => {
  const fromEnv = loadConfig({ ...good, SLIPWAY_GATEWAY: 'https://gw-a.example.com, https://gw-b.example.com:8443,', SLIPWAY_GATEWAY_LINKS: '3' });
  assert.deepEqual(fromEnv.gatewayUrls.map((u) => u.host), ['gw-a.example.com', 'gw-b.example.com:8443']);
  assert.equal(fromEnv.gatewayLinks, 3);

  const fromFlags = loadConfig(good, ['--gateway', 'https://gw-c.example.com', '--gateway=https://gw-d.example.com', '--gateway-links', '2']);
  assert.deepEqual(fromFlags.gatewayUrls.map((u) => u.host), ['gw-c.example.com', 'gw-d.example.com'], 'flags replace the environment');
  assert.equal(fromFlags.gatewayLinks, 2);
});

test('every bad gateway URL is reported, with the link count, at once', () => {
  assert.throws(
    () =>
      loadConfig({ ...good, SLIPWAY_GATEWAY: 'http://plain.example.com,https://ok.example.com,not a url,https://ok.example.com/again', SLIPWAY_GATEWAY_LINKS: '9' }),
    (err: AgentError) => {
      assert.equal(err.code, 'CONFIG_INVALID');
      for (const part of ["'http://plain.example.com'", "'not a url'", 'https://ok.example.com twice', 'SLIPWAY_GATEWAY_LINKS must be an integer from 1 to 8']) {
        assert.ok(err.message.includes(part), `mentions ${part}: ${err.message}`);
      }
      return true;
    },
  );
});

test('a gateway URL is required', () => {
  for (const value of [undefined, '', ' , ']) {
    assert.throws(() => loadConfig({ ...good, SLIPWAY_GATEWAY: value }), (err: AgentError) => err.code === 'CONFIG_INVALID' && /SLIPWAY_GATEWAY \(or --gateway\) is required/.test(err.message));
  }
});
