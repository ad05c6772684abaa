import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../src/config.js';
import { CliError } from '../src/cliError.js';

const env = { SLIPWAY_GATEWAY: 'https://gw.example.com', SLIPWAY_TOKEN: 't' };

test('--listen repeats and replaces SLIPWAY_LISTEN', () => {
  const config = loadConfig({ ...env, SLIPWAY_LISTEN: 'unix:///ignored.sock' }, ['--platform', 'linux/amd64', '--listen', 'unix:///a.sock', '--listen', 'tcp://127.0.0.1:0'], { listen: true });
  assert.deepEqual(config.listen, [
    { kind: 'unix', path: '/a.sock' },
    { kind: 'tcp', host: '127.0.0.1', port: 0 },
  ]);
  assert.equal(config.transport, 'auto');
});

test('SLIPWAY_LISTEN alone takes a comma-separated list', () => {
  const config = loadConfig({ ...env, SLIPWAY_LISTEN: 'unix:///a.sock,unix:///b.sock', SLIPWAY_PLATFORM: 'linux/arm64' }, [], { listen: true });
  assert.equal(config.listen.length, 2);
  assert.equal(config.platform, 'linux/arm64');
});

test('every problem is reported at once', () => {
  assert.throws(
    () => loadConfig({}, ['--listen', 'unix://relative.sock', '--transport', 'carrier-pigeon'], { listen: true }),
    (err: CliError) => {
      assert.equal(err.code, 'CONFIG_INVALID');
      for (const part of ['SLIPWAY_GATEWAY', 'SLIPWAY_TOKEN', '--platform', 'absolute path', 'SLIPWAY_TRANSPORT']) {
        assert.ok(err.message.includes(part), `mentions ${part}: ${err.message}`);
      }
      return true;
    },
  );
});
