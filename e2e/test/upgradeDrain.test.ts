// An upgrade as docs/OPERATIONS.md describes it: two gateway replicas on a real Redis behind a TCP
// load balancer that, like the NLB, health-checks /readyz; two agents, each linked to both
// replicas. While long builds stream through them and new builds keep arriving, one replica and
// one agent drain. No stream may fail: every stream that started completes byte-exact, and new
// streams land on the replica and agent that stay.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { createLogger } from '@slipway/proto';
import { TunnelClient, type CliError } from '@slipway/cli';
import { makeTestPki, RedisRoutingTable, type TestPki } from '@slipway/gateway';
import { startRedis, startStack, startEchoServer, startTcpBalancer, type RedisServer, type SlipwayStack, type EchoServer, type TcpBalancer } from '../src/index.js';

const log = createLogger('test-cli', process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent');
const PROJECT = 'web';
const LONG_STREAMS = 4;
const LONG_STREAM_BYTES = 3 * 1024 * 1024;
const CHUNK_BYTES = 32 * 1024;
const GRACE_MS = 60_000;

let redis: RedisServer;
let pki: TestPki;
const echoes: EchoServer[] = [];
const stacks: SlipwayStack[] = [];
// New builds' streams that failed around the drains.
const drainingRefusals: string[] = [];

before(async () => {
  redis = await startRedis();
  pki = await makeTestPki();
});

after(async () => {
  for (const s of stacks) await s.close().catch(() => {});
  for (const s of stacks) await s.table.close().catch(() => {});
  for (const e of echoes) await e.close();
  await redis.stop();
  await pki.cleanup();
});

async function replica(gatewayId: string): Promise<SlipwayStack> {
  const table = new RedisRoutingTable({ client: new Redis(redis.url, { maxRetriesPerRequest: 1 }), keyPrefix: `u${process.pid}:` });
  // A short spill, so the project's builds spread over both agents as soon as one is full.
  const stack = await startStack({ table, pki, gatewayId, builderLeaseMs: 3_000, heartbeatIntervalMs: 500, heartbeatTimeoutMs: 5_000, spillAfterMs: 100 });
  stacks.push(stack);
  return stack;
}

// The load balancer's health check: a backend whose /readyz does not answer 200 gets no new connections.
function healthCheck(lb: TcpBalancer, ports: number[], caPath: string): { stop(): void } {
  const ca = fs.readFileSync(caPath);
  let stopped = false;
  const probe = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const req = https.get({ host: '127.0.0.1', port, path: '/readyz', ca, servername: 'localhost', agent: false, timeout: 2_000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
    });
  void (async () => {
    while (!stopped) {
      const healthy = await Promise.all(ports.map(probe));
      lb.backends = ports.filter((_, i) => healthy[i]);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return { stop: () => void (stopped = true) };
}

function client(stack: SlipwayStack, lb: TcpBalancer, token: string): TunnelClient {
  return new TunnelClient({
    gatewayUrl: new URL(lb.url),
    token,
    project: PROJECT,
    ca: fs.readFileSync(stack.caPath),
    transport: 'h2',
    env: {},
    connectTimeoutMs: 5_000,
    log,
    acquireTimeoutMs: 20_000,
    // A build whose streams are done gives its builder slot back soon, as `slipway proxy` does
    // (there after 30 s): the long builds must not keep the surviving agent full for the rest of
    // the test, or new builds would wait on capacity rather than on the drain.
    buildIdleMs: 300,
  });
}

interface StreamOutcome {
  label: string;
  error: CliError | Error | undefined;
  sent: string;
  received: string;
}

// One tunnel stream: writes `bytes` in chunks, paced by `pace` (a promise per chunk), hashes
// what comes back, and settles once the far side has ended (cleanly or not).
async function stream(c: TunnelClient, label: string, bytes: number, pace: () => Promise<void>): Promise<StreamOutcome> {
  const sent = createHash('sha256');
  const received = createHash('sha256');
  try {
    const tunnel = await c.open('linux/amd64');
    tunnel.readable.on('data', (chunk: Buffer) => received.update(chunk));
    const ended = once(tunnel, 'remote-end') as Promise<[CliError | undefined]>;
    const writing = (async () => {
      for (let offset = 0; offset < bytes; offset += CHUNK_BYTES) {
        const chunk = randomBytes(Math.min(CHUNK_BYTES, bytes - offset));
        sent.update(chunk);
        if (!tunnel.writable.write(chunk)) await once(tunnel.writable, 'drain');
        await pace();
      }
      tunnel.writable.end();
    })();
    const [error] = await ended;
    await writing.catch(() => {});
    c.streamEnded();
    return { label, error, sent: sent.digest('hex'), received: received.digest('hex') };
  } catch (err) {
    return { label, error: err as Error, sent: '', received: '' };
  }
}

test('draining one of two gateway replicas and one of two agents while builds stream: every stream that started completes byte-exact, new streams go to the survivors', async () => {
  echoes.push(await startEchoServer(), await startEchoServer());
  const [echoX, echoY] = echoes as [EchoServer, EchoServer];
  const a = await replica('gw-a');
  const b = await replica('gw-b');
  const lb = await startTcpBalancer([a.port, b.port]);
  const health = healthCheck(lb, [a.port, b.port], a.caPath);
  // Each agent keeps a link to each replica; four builds at once each (the long builds fill one, new builds spill onto the other).
  const agentX = await a.startAgent({ agentId: 'builder-x', platform: 'linux/amd64', upstream: `buildkitd:${echoX.address}`, gatewayUrls: [a.gatewayUrl, b.gatewayUrl], maxBuilds: 4 });
  const agentY = await a.startAgent({ agentId: 'builder-y', platform: 'linux/amd64', upstream: `buildkitd:${echoY.address}`, gatewayUrls: [a.gatewayUrl, b.gatewayUrl], maxBuilds: 4 });
  const token = await a.clientToken(PROJECT);
  const clients: TunnelClient[] = [];
  const newClient = (): TunnelClient => {
    const c = client(a, lb, token);
    clients.push(c);
    return c;
  };

  // Long builds (one per CLI, each a build of its own), paced so they outlive both drains.
  let release!: () => void;
  const drainsStarted = new Promise<void>((r) => (release = r));
  let chunks = 0;
  const longPace = async (): Promise<void> => {
    // The first half goes out at once; the rest only once both drains are under way.
    if (++chunks === Math.floor((LONG_STREAMS * LONG_STREAM_BYTES) / CHUNK_BYTES / 2)) return;
    if (chunks > (LONG_STREAMS * LONG_STREAM_BYTES) / CHUNK_BYTES / 2) {
      await drainsStarted;
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const longClients = Array.from({ length: LONG_STREAMS }, () => newClient());
  const longStreams = longClients.map((c, i) => stream(c, `long-${i}`, LONG_STREAM_BYTES, longPace));
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(echoX.connections + echoY.connections >= LONG_STREAMS - 1, 'the long streams reached the agents');

  // New builds keep arriving, each its own CLI (as `slipway dial-stdio`), a few in flight at once.
  const shortOutcomes: Array<StreamOutcome & { phase: string }> = [];
  let phase = 'before';
  let arriving = true;
  const arrivals = (async () => {
    let n = 0;
    const inFlight = new Set<Promise<void>>();
    while (arriving) {
      const label = `short-${n++}`;
      const at = phase;
      const c = newClient();
      const p = stream(c, label, 64 * 1024, () => Promise.resolve()).then(async (o) => {
        shortOutcomes.push({ ...o, phase: at });
        await c.close();
      });
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= 3) await Promise.race(inFlight);
      await new Promise((r) => setTimeout(r, 30));
    }
    await Promise.all(inFlight);
  })();
  await new Promise((r) => setTimeout(r, 1_000));

  // The upgrade: replica A gets SIGTERM (it drains), and so does the busier agent.
  const busier = echoX.connections >= echoY.connections ? { agent: agentX, echo: echoX, survivor: echoY } : { agent: agentY, echo: echoY, survivor: echoX };
  phase = 'draining';
  const aOpenedBefore = await streamsOpened(a);
  const gatewayDrained = a.gateway.close(GRACE_MS);
  const drainedEchoConnections = busier.echo.connections;
  const agentDrained = busier.agent.drain(GRACE_MS);
  release();

  const outcomes = await Promise.all(longStreams);
  await Promise.all([gatewayDrained, agentDrained]);
  phase = 'after';
  await new Promise((r) => setTimeout(r, 1_000));
  arriving = false;
  await arrivals;
  health.stop();
  for (const c of clients) await c.close().catch(() => {});
  await lb.close();

  const problems: string[] = [];
  for (const o of [...outcomes, ...shortOutcomes]) {
    const code = (o.error as CliError | undefined)?.code;
    const line = `${o.label}${'phase' in o ? ` (${String(o.phase)})` : ''}: ${code ?? ''} ${o.error?.message ?? 'bytes differ'}`;
    // New builds that start around the drains: see the next test.
    if (o.error && o.label.startsWith('short-')) drainingRefusals.push(line);
    else if (o.error || o.sent !== o.received) problems.push(line);
  }
  assert.deepEqual(problems, [], `streams failed during the upgrade:\n  ${problems.join('\n  ')}`);
  assert.equal(outcomes.length, LONG_STREAMS);
  assert.ok(shortOutcomes.filter((o) => o.phase === 'after' && !o.error).length > 0, 'no new stream after the drains');
  // The draining agent still serves the builds placed on it before its drain (their new streams
  // included: that is what keeps them from failing); that no *new build* is placed on a draining
  // agent is shown in agentLifecycle.test.ts.
  assert.ok(busier.echo.connections >= drainedEchoConnections);
  assert.ok(busier.survivor.connections > 0);
  // The draining replica may still serve streams already on their way to it (a GOAWAY crosses
  // them on the wire) and connections sent before the balancer saw /readyz fail; none may fail.
  assert.ok((await streamsOpened(a)) >= aOpenedBefore);
});

// A draining replica keeps serving (it holds its agents' links until the end) and marks its
// answers (slipway-draining), so each CLI opens its next streams on a new connection, which the
// balancer gives to the replica that stays. A draining agent leaves placement at once but keeps
// taking streams of the builds already placed on it until they are done. So no new build fails.
test('no new build fails while a replica and an agent drain', () => {
  assert.deepEqual(drainingRefusals, [], `new streams refused by the draining replica:\n  ${drainingRefusals.join('\n  ')}`);
});

async function streamsOpened(stack: SlipwayStack): Promise<number> {
  const text = await stack.gateway.metrics.registry.render();
  let total = 0;
  for (const m of text.matchAll(/^slipway_tunnel_streams_opened_total\{[^}]*\} (\d+)/gm)) total += Number(m[1]);
  return total;
}
