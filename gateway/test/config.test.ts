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
