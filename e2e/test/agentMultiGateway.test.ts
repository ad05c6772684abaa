// An agent asked for two links through one gateway URL, against the real gateway. The harness has
// one gateway replica, so only one link can be held: every second link lands on the replica
// already held and must be dropped before the gateway takes it in, or the gateway would replace
// the first link with it and the agent would flap between its two links.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createLogger } from '@slipway/proto';
import { Agent, loadConfig } from '@slipway/agent';
import type { CliError } from '@slipway/cli';
import { startStack, startEchoServer, tunnelClientFor, waitFor, type SlipwayStack, type EchoServer } from '@slipway/e2e';

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

test('two links through one URL to a single replica: the second is dropped each time, the first is never replaced', async () => {
  const agentId = 'multi-link';
  const lines: string[] = [];
  const log = createLogger(`agent-${agentId}`, 'info', (line) => {
    lines.push(line);
    if (process.env['SLIPWAY_TEST_VERBOSE'] === '1') process.stderr.write(line);
  });
  const config = loadConfig(
    {
      SLIPWAY_GATEWAY: stack.gatewayUrl,
      SLIPWAY_GATEWAY_LINKS: '2',
      SLIPWAY_AGENT_TOKEN: await stack.agentToken(agentId),
      SLIPWAY_AGENT_ID: agentId,
      SLIPWAY_PLATFORM: 'linux/amd64',
      SLIPWAY_UPSTREAM: `buildkitd:${echo.address}`,
      SLIPWAY_CA_CERT: stack.caPath,
      SLIPWAY_HEARTBEAT_TIMEOUT_MS: '10000',
      SLIPWAY_RECONNECT_BASE_MS: '20',
      SLIPWAY_RECONNECT_MAX_MS: '100',
    },
    [],
  );
  const agent = new Agent(config, log);
  agent.start();
  const client = await tunnelClientFor(stack, { transport: 'h2' });
  try {
    const linksOfAgent = (): ReturnType<SlipwayStack['gateway']['pool']['list']> => stack.gateway.pool.list().filter((l) => l.agentId === agentId);
    await waitFor(() => linksOfAgent().some((l) => l.description !== undefined), 10_000, 'the agent registered');
    const [held] = linksOfAgent();
    assert.ok(held);

    // Each drop is a whole dial: TLS, token check and a 101 from the real gateway.
    const dropped = (): number => lines.filter((line) => line.includes('gateway replica already linked')).length;
    await waitFor(() => dropped() >= 3, 20_000, 'three second links dropped');

    assert.deepEqual(linksOfAgent(), [held], 'the gateway still has the first link, and only it');
    assert.equal(held.closed, false);
    assert.deepEqual(agent.liveLinks(), [{ gatewayUrl: new URL(stack.gatewayUrl).href, gatewayId: 'gw-test' }]);
    assert.equal(agent.state, 'connected');

    const stream = await client.open('linux/amd64');
    const received: Buffer[] = [];
    stream.readable.on('data', (chunk: Buffer) => received.push(chunk));
    const ended = once(stream, 'remote-end') as Promise<[CliError | undefined]>;
    stream.writable.end('through the held link');
    const [error] = await ended;
    assert.equal(error, undefined);
    assert.equal(Buffer.concat(received).toString(), 'through the held link');
  } finally {
    client.close();
    await agent.close();
  }
});
