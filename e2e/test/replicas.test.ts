// Stateless gateway replicas sharing a real Redis: any replica routes any build, a stream that
// enters one replica for a builder linked to another is forwarded there, and a dead replica
// costs only the streams it carried.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { createLogger } from '@slipway/proto';
import { LocalProxy, type CliError } from '@slipway/cli';
import { makeTestPki, RedisRoutingTable, type TestPki } from '@slipway/gateway';
import {
  startRedis,
  startStack,
  startEchoServer,
  startTcpBalancer,
  tunnelClientFor,
  connectUnix,
  echoRoundTrip,
  waitForAsync,
  acquireBuild,
  gatewayApi,
  type RedisServer,
  type SlipwayStack,
  type EchoServer,
  type TcpBalancer,
} from '@slipway/e2e';

const log = createLogger('test-cli', process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent');
const LEASE_MS = 2_000;
let redis: RedisServer;
let pki: TestPki;
let echo: EchoServer;
let dir: string;
const stacks: SlipwayStack[] = [];

function table(): RedisRoutingTable {
  return new RedisRoutingTable({ client: new Redis(redis.url, { maxRetriesPerRequest: 1 }), keyPrefix: `t${process.pid}:` });
}

async function replica(gatewayId: string): Promise<SlipwayStack> {
  const stack = await startStack({ table: table(), pki, gatewayId, builderLeaseMs: LEASE_MS, heartbeatIntervalMs: 500, heartbeatTimeoutMs: 5_000 });
  stacks.push(stack);
  return stack;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-replicas-'));
  redis = await startRedis();
  pki = await makeTestPki();
  echo = await startEchoServer();
});

after(async () => {
  for (const s of stacks) await s.close().catch(() => {});
  for (const s of stacks) await s.table.close().catch(() => {});
  await echo.close();
  await redis.stop();
  await pki.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a stream entering replica A reaches an agent linked only to replica B, bytes intact; killing B fails it with AGENT_LOST and the agent comes back through A', async () => {
  const a = await replica('gw-a');
  const b = await replica('gw-b');
  // The agent reaches the replicas through a TCP load balancer that prefers B while B lives.
  const lb: TcpBalancer = await startTcpBalancer([b.port, a.port]);
  try {
    await b.startAgent({ agentId: 'only-on-b', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}`, gatewayUrls: [lb.url] });
    assert.equal(a.gateway.pool.get('only-on-b'), undefined, 'A holds no link to the agent');
    assert.ok(b.gateway.pool.get('only-on-b'), 'B holds the link');

    const client = await tunnelClientFor(a, { transport: 'h2', project: 'demo' });
    const proxy = new LocalProxy(client, 'linux/amd64', log);
    const sock = path.join(dir, 'a.sock');
    await proxy.listen({ kind: 'unix', path: sock });
    try {
      const result = await echoRoundTrip(await connectUnix(sock), 64 * 1024 * 1024);
      assert.equal(result.receivedBytes, 64 * 1024 * 1024);
      assert.equal(result.received, result.sent, 'forwarded bytes arrive intact');
      assert.match(await a.gateway.metrics.registry.render(), /slipway_tunnel_streams_opened_total\{platform="linux\/amd64",transport="h2"\} [1-9]/);
      assert.match(await b.gateway.metrics.registry.render(), /slipway_tunnel_streams_opened_total\{platform="linux\/amd64",transport="forward"\} [1-9]/);

      // A stream in flight through A to B when B dies.
      const tunnel = await client.open('linux/amd64');
      tunnel.readable.resume();
      await once(tunnel, 'open');
      const block = Buffer.alloc(64 * 1024, 7);
      const pumping = setInterval(() => tunnel.writable.write(block), 5);
      const ended = once(tunnel, 'remote-end') as Promise<[CliError | undefined]>;
      await new Promise((r) => setTimeout(r, 200));
      await b.gateway.close(0);
      const [error] = await ended;
      clearInterval(pumping);
      tunnel.cancel();
      client.streamEnded();
      assert.ok(error, 'the stream failed rather than ending cleanly');
      assert.equal(error.code, 'AGENT_LOST');
      assert.match(error.message, /only-on-b/);

      // The agent redials through the balancer, reaches A, and service resumes through A.
      await waitForAsync(async () => a.gateway.pool.get('only-on-b') !== undefined, 30_000, 'agent relinked to A');
      const again = await echoRoundTrip(await connectUnix(sock), 8 * 1024 * 1024);
      assert.equal(again.received, again.sent);
    } finally {
      await proxy.close();
      await client.close();
    }
  } finally {
    await lb.close();
  }
});

test('an agent whose lease expires (its replica died) is out of placement within one lease period, and its builds fail fast', async () => {
  const a = await replica('gw-c');
  const b = await replica('gw-d');
  await b.startAgent({ agentId: 'lease-test', platform: 'linux/arm64', upstream: `buildkitd:${echo.address}` });
  const build = await acquireBuild(a, { project: 'leasy', platform: 'linux/arm64' });
  assert.equal(build.agentId, 'lease-test');
  // B vanishes without telling the table anything: its leases simply stop being renewed. The
  // agent only knows B, so it cannot come back.
  await b.gateway.close(0);
  for (const agent of b.agents.values()) await agent.close();
  await waitForAsync(
    async () => (await a.table.getAllocation(build.buildId, 'linux/arm64'))?.state === 'failed',
    // One lease, one reap interval (a third of a lease), and slack for a busy 2-core machine.
    LEASE_MS * 4,
    'the build on the expired builder failed',
  );
  const record = await a.table.getAllocation(build.buildId, 'linux/arm64');
  assert.match(record!.reason ?? '', /lease-test/);

  // The client learns it: the lifecycle reports the failure, a tunnel is refused as AGENT_LOST.
  const status = await gatewayApi<{ allocations: Array<{ state: string; reason: string }> }>(a, 'POST', `/v1/builds/${build.buildId}/heartbeat`, build.token);
  assert.equal(status.body.allocations[0]?.state, 'failed');
  const client = await tunnelClientFor(a, { transport: 'h2', project: 'leasy' });
  try {
    const created = await gatewayApi<{ buildId: string; token: string }>(a, 'POST', '/v1/builds', await a.clientToken('leasy'), { platforms: ['linux/arm64'] });
    const acquire = await gatewayApi<{ state?: string; reason?: string }>(a, 'POST', `/v1/builds/${created.body.buildId}/acquire`, created.body.token, {
      platform: 'linux/arm64',
    });
    // The project's builder (and cache) may come back: the build waits for it, placed nowhere.
    assert.equal(acquire.body.state, 'pending', 'nothing is placed on the expired builder');
    assert.equal(acquire.body.reason, 'starting');
  } finally {
    await client.close();
  }
});
