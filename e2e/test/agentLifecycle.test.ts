// The programs as users run them: dial-stdio carrying stdin/stdout, and an agent draining on
// SIGTERM without cutting the streams it carries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { CliError } from '@slipway/cli';
import { startStack, startEchoServer, startAgentProcess, waitFor, waitForAsync, gatewayApi, SLIPWAY_BIN, tunnelClientFor, type SlipwayStack, type EchoServer } from '@slipway/e2e';

let stack: SlipwayStack;
let echo: EchoServer;

before(async () => {
  echo = await startEchoServer();
  stack = await startStack();
});

after(async () => {
  await stack.close();
  await echo.close();
});

test('slipway dial-stdio carries stdin to the builder and its answer to stdout', async () => {
  await stack.startAgent({ agentId: 'stdio-amd64', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
  const payload = randomBytes(3 * 1024 * 1024);
  const child = spawn(process.execPath, [SLIPWAY_BIN, 'dial-stdio', '--platform', 'linux/amd64'], {
    env: { PATH: process.env['PATH'] ?? '', SLIPWAY_GATEWAY: stack.gatewayUrl, SLIPWAY_TOKEN: await stack.clientToken('demo'), SLIPWAY_CA_CERT: stack.caPath },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  child.stdin.end(payload);
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, stderr);
  assert.ok(Buffer.concat(chunks).equals(payload), 'stdout carries exactly what went in');
});

test('dial-stdio exits non-zero with a clear error when no builder serves the platform', async () => {
  const child = spawn(process.execPath, [SLIPWAY_BIN, 'dial-stdio', '--platform', 'linux/arm64'], {
    env: { PATH: process.env['PATH'] ?? '', SLIPWAY_GATEWAY: stack.gatewayUrl, SLIPWAY_TOKEN: await stack.clientToken('demo'), SLIPWAY_CA_CERT: stack.caPath },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  child.stdin.end('hello');
  const [code] = await once(child, 'exit');
  assert.notEqual(code, 0);
  assert.match(stderr, /no linux\/arm64 builder is connected/);
});

test('an agent drains on SIGTERM: no new build is placed on it, its builds keep working (new streams included), then it exits 0', async () => {
  const agentId = 'drainer';
  const agent = await startAgentProcess(stack, {
    agentId,
    platform: 'linux/arm64',
    upstream: `buildkitd:${echo.address}`,
    env: { SLIPWAY_DRAIN_GRACE_MS: '60000', SLIPWAY_DRAIN_QUIET_MS: '500' },
  });
  const client = await tunnelClientFor(stack, { transport: 'h2' });
  try {
    const active = await client.open('linux/arm64');
    const received: Buffer[] = [];
    active.readable.on('data', (c: Buffer) => received.push(c));
    active.writable.write('before-drain;');
    await waitFor(() => Buffer.concat(received).length >= 13, 10_000, 'first echo');

    agent.child.kill('SIGTERM');
    await waitFor(() => stack.gateway.pool.list().some((l) => l.agentId === agentId && l.draining), 10_000, 'gateway sees the agent draining');
    await waitForAsync(async () => (await stack.table.getBuilder(agentId, 'linux/arm64'))?.draining === true, 10_000, 'the routing table has it draining');

    // A new build is not placed on it.
    const created = await gatewayApi<{ buildId: string; token: string }>(stack, 'POST', '/v1/builds', await stack.clientToken('other'), { platforms: ['linux/arm64'] });
    const acquire = await gatewayApi<{ state?: string; error?: { code: string } }>(stack, 'POST', `/v1/builds/${created.body.buildId}/acquire`, created.body.token, {
      platform: 'linux/arm64',
    });
    assert.notEqual(acquire.body.state, 'active', `a new build is not placed on a draining agent: ${JSON.stringify(acquire.body)}`);

    // The build already on it opens another stream, as buildx does between steps: served.
    const second = await client.open('linux/arm64');
    const secondReceived: Buffer[] = [];
    second.readable.on('data', (c: Buffer) => secondReceived.push(c));
    const secondEnded = once(second, 'remote-end') as Promise<[CliError | undefined]>;
    second.writable.end('during-drain');
    const [secondError] = await secondEnded;
    assert.equal(secondError, undefined);
    assert.equal(Buffer.concat(secondReceived).toString(), 'during-drain');

    // The stream that was running keeps working to its end.
    const ended = once(active, 'remote-end') as Promise<[CliError | undefined]>;
    active.writable.end('after-drain');
    const [error] = await ended;
    assert.equal(error, undefined);
    assert.equal(Buffer.concat(received).toString(), 'before-drain;after-drain');
    const status = await agent.exited;
    assert.equal(status.code, 0);
  } finally {
    await client.close();
    await agent.stop();
  }
});
