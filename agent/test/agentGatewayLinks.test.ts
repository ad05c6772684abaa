// The agent's links to several gateway replicas, against fake gateways on real TLS sockets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { createLogger } from '@slipway/proto';
import { Agent } from '../src/agent.js';
import { loadConfig } from '../src/config.js';
import { FakeGateway, type FakeLink } from './fakeGateway.js';
import { makeTestTls, type TestTls } from './testTls.js';

let pki: TestTls;
let upstreamPath: string;
let upstream: net.Server;

before(async () => {
  pki = await makeTestTls();
  // An echo server as BuildKit, for the streams the drain test keeps open.
  upstreamPath = path.join(pki.dir, 'upstream.sock');
  upstream = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
    socket.on('end', () => socket.end());
  });
  upstream.listen(upstreamPath);
  await once(upstream, 'listening');
});

after(async () => {
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
  await pki.cleanup();
});

const log = createLogger('agent', process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent');

function startAgent(t: { after: (fn: () => Promise<void>) => void }, gateways: string[], links = 1, extra: Record<string, string> = {}): Agent {
  const config = loadConfig(
    {
      SLIPWAY_GATEWAY: gateways.join(','),
      SLIPWAY_GATEWAY_LINKS: String(links),
      SLIPWAY_AGENT_TOKEN: 'test-token',
      SLIPWAY_AGENT_ID: 'agent-under-test',
      SLIPWAY_PLATFORM: 'linux/amd64',
      SLIPWAY_UPSTREAM: `buildkitd:unix://${upstreamPath}`,
      SLIPWAY_CA_CERT: pki.caCertPath,
      // Generous: tests share two cores, and a busy event loop must not look like a dead link.
      SLIPWAY_HEARTBEAT_TIMEOUT_MS: '30000',
      SLIPWAY_RECONNECT_BASE_MS: '20',
      SLIPWAY_RECONNECT_MAX_MS: '200',
      ...extra,
    },
    [],
  );
  const agent = new Agent(config, log);
  t.after(() => agent.close());
  agent.start();
  return agent;
}

async function startGateway(t: { after: (fn: () => Promise<void>) => void }, idFor: (index: number) => string): Promise<FakeGateway> {
  const gateway = new FakeGateway(pki, idFor);
  await gateway.listen();
  t.after(() => gateway.stop());
  return gateway;
}

// Waits for a state the agent reaches by itself; the deadline only turns a hang into a message.
async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function liveIds(agent: Agent): string[] {
  return agent
    .liveLinks()
    .map((link) => link.gatewayId)
    .sort();
}

function onlyOpenLink(gateway: FakeGateway): FakeLink {
  const open = gateway.openLinks();
  assert.equal(open.length, 1, `one open link at ${gateway.url}; have ${open.length}`);
  return open[0]!;
}

test('with two gateway URLs the agent holds a link to each and serves HTTP/2 on both', async (t) => {
  const a = await startGateway(t, () => 'gw-a');
  const b = await startGateway(t, () => 'gw-b');
  const agent = startAgent(t, [a.url, b.url]);
  const connectedIds: string[] = [];
  agent.on('connected', (gatewayId) => connectedIds.push(gatewayId));

  await eventually(() => agent.liveLinks().length === 2, 'links to both gateways');
  assert.deepEqual(
    agent.liveLinks().sort((x, y) => x.gatewayId.localeCompare(y.gatewayId)),
    [
      { gatewayUrl: new URL(a.url).href, gatewayId: 'gw-a' },
      { gatewayUrl: new URL(b.url).href, gatewayId: 'gw-b' },
    ],
  );
  assert.deepEqual(connectedIds.sort(), ['gw-a', 'gw-b'], 'connected names the replica each time');
  assert.equal(agent.state, 'connected');
  assert.equal(await a.probe(onlyOpenLink(a)), 404);
  assert.equal(await b.probe(onlyOpenLink(b)), 404);
});

test('through one load-balanced URL, a link landing on a replica already held is dropped at once and retried', async (t) => {
  // The balancer sends the first two links to the same replica, then to another one.
  const lb = await startGateway(t, (index) => (index < 2 ? 'gw-a' : 'gw-b'));
  const agent = startAgent(t, [lb.url], 2);

  await eventually(() => agent.liveLinks().length === 2, 'links to two distinct replicas');
  assert.deepEqual(liveIds(agent), ['gw-a', 'gw-b']);

  const byIndex = [...lb.links].sort((x, y) => x.index - y.index);
  assert.deepEqual(
    byIndex.map((link) => link.gatewayId),
    ['gw-a', 'gw-a', 'gw-b'],
    'one retry, then both slots are settled and nothing more is dialed',
  );
  const [first, second, third] = byIndex as [FakeLink, FakeLink, FakeLink];
  const dropped = [first, second].filter((link) => link.closed);
  const kept = [first, second].filter((link) => !link.closed);
  assert.equal(dropped.length, 1, 'exactly one of the two links to gw-a was closed');
  assert.equal(dropped[0]!.served, false, 'closed before the agent served HTTP/2 on it, so the gateway never takes it in');
  assert.equal(kept.length, 1);
  assert.equal(await lb.probe(kept[0]!), 404, 'the link held first is still served, not replaced');
  assert.equal(third.closed, false);
  assert.equal(await lb.probe(third), 404);
});

test('when one gateway dies the other link stays up, and the dead one is linked again when it returns', async (t) => {
  const a = await startGateway(t, () => 'gw-a');
  const b = await startGateway(t, () => 'gw-b');
  const agent = startAgent(t, [a.url, b.url]);
  await eventually(() => agent.liveLinks().length === 2, 'links to both gateways');
  const linkToA = onlyOpenLink(a);
  const disconnected: Array<[string, string]> = [];
  agent.on('disconnected', (reason, gatewayId) => disconnected.push([gatewayId, reason]));

  await b.stop();
  await eventually(() => liveIds(agent).join() === 'gw-a', 'the agent notices gw-b is gone');
  assert.deepEqual(
    disconnected.map(([gatewayId]) => gatewayId),
    ['gw-b'],
  );
  assert.equal(agent.state, 'connected', 'still reachable through gw-a');
  assert.equal(linkToA.closed, false);
  assert.equal(await a.probe(linkToA), 404, 'the link to gw-a carries requests while gw-b is down');

  await b.listen();
  await eventually(() => agent.liveLinks().length === 2, 'the link to gw-b comes back');
  assert.deepEqual(liveIds(agent), ['gw-a', 'gw-b']);
  assert.equal(await b.probe(onlyOpenLink(b)), 404);
  assert.equal(a.links.length, 1, 'gw-a was never redialed');
  assert.equal(linkToA.closed, false);
});

test('drain keeps taking streams of builds already placed (placement stops on its own), then, once quiet, sends GOAWAY on every link and closes them for good', async (t) => {
  const a = await startGateway(t, () => 'gw-a');
  const b = await startGateway(t, () => 'gw-b');
  const agent = startAgent(t, [a.url, b.url], 1, { SLIPWAY_DRAIN_QUIET_MS: '300' });
  await eventually(() => agent.liveLinks().length === 2, 'links to both gateways');
  const linkToA = onlyOpenLink(a);
  const linkToB = onlyOpenLink(b);

  const stream = a.openStream(linkToA, 'drain-1');
  const echoed: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => echoed.push(chunk));
  const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
  assert.equal(headers[':status'], 200);
  assert.equal(agent.activeStreams, 1);

  const drained = agent.drain(60_000);
  assert.equal(agent.state, 'draining');
  // A build placed here before the drain opens another connection: it is still served.
  const late = b.openStream(linkToB, 'drain-2');
  const lateEchoed: Buffer[] = [];
  late.on('data', (chunk: Buffer) => lateEchoed.push(chunk));
  const [lateHeaders] = (await once(late, 'response')) as [Record<string, unknown>];
  assert.equal(lateHeaders[':status'], 200, 'a stream opened while draining is taken');
  late.end('still here');
  await once(late, 'end');
  assert.equal(Buffer.concat(lateEchoed).toString(), 'still here');
  assert.equal(linkToA.goawayReceived || linkToB.goawayReceived, false, 'no GOAWAY while streams are still running');

  stream.end('last words');
  await once(stream, 'end');
  assert.equal(Buffer.concat(echoed).toString(), 'last words');
  await drained;
  assert.equal(agent.state, 'stopped');
  assert.deepEqual(agent.liveLinks(), []);
  await eventually(() => linkToA.closed && linkToB.closed, 'both links closed');
  assert.equal(a.links.length + b.links.length, 2, 'nothing redialed while draining or after');
});

test('a gateway that names itself badly is refused, and the agent keeps trying', async (t) => {
  const gateway = await startGateway(t, (index) => (index === 0 ? 'bad id with spaces' : 'gw-ok'));
  const agent = startAgent(t, [gateway.url]);
  await eventually(() => liveIds(agent).join() === 'gw-ok', 'a link once the gateway names itself properly');
  const first = gateway.links.find((link) => link.index === 0);
  assert.equal(first?.closed, true);
  assert.equal(first?.served, false);
});
