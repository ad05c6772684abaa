import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { createLogger } from '@slipway/proto';
import { TunnelClient, LocalProxy } from '@slipway/cli';
import {
  startStack,
  startEchoServer,
  echoRoundTrip,
  connectUnix,
  readAll,
  waitFor,
  tunnelClientFor,
  startTlsRecordTap,
  TLS_APPLICATION_DATA,
  type SlipwayStack,
  type EchoServer,
} from '@slipway/e2e';

const log = createLogger('test-cli', process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent');
let stack: SlipwayStack;
let echo: EchoServer;
let dir: string;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-tun-'));
  echo = await startEchoServer();
  stack = await startStack();
  await stack.startAgent({ agentId: 'echo-amd64', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
});

after(async () => {
  await stack.close();
  await echo.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// Streams this gateway carried to its agent on lanes, or on the agent link.
function streamsCarriedOn(s: SlipwayStack, path: 'lane' | 'link'): number {
  return s.gateway.metrics.streamsByPath.values.get(`{path="${path}"}`) ?? 0;
}

async function proxyFor(
  s: SlipwayStack,
  transport: 'h2' | 'websocket',
  name: string,
  platform: 'linux/amd64' | 'linux/arm64' = 'linux/amd64',
): Promise<{ proxy: LocalProxy; client: TunnelClient; sock: string; close(): Promise<void> }> {
  const client = await tunnelClientFor(s, { transport, project: 'demo' });
  const proxy = new LocalProxy(client, platform, log);
  const sock = path.join(dir, `${name}.sock`);
  await proxy.listen({ kind: 'unix', path: sock });
  return {
    proxy,
    client,
    sock,
    close: async () => {
      await proxy.close();
      await client.close();
    },
  };
}

for (const transport of ['h2', 'websocket'] as const) {
  test(`1 GiB each way through one ${transport} stream arrives intact`, async () => {
    const { client, sock, close } = await proxyFor(stack, transport, `big-${transport}`);
    try {
      await waitFor(() => (stack.gateway.pool.get('echo-amd64')?.lanes.idleCount ?? 0) > 0, 10_000, 'an idle lane from the agent');
      const onLanes = streamsCarriedOn(stack, 'lane');
      const socket = await connectUnix(sock);
      const result = await echoRoundTrip(socket, 1024 * 1024 * 1024);
      assert.equal(result.receivedBytes, 1024 * 1024 * 1024);
      assert.equal(result.received, result.sent);
      assert.equal(client.transport, transport);
      assert.equal(streamsCarriedOn(stack, 'lane'), onLanes + 1, 'the stream was carried to the agent on a lane');
    } finally {
      await close();
    }
  });
}

// Lanes are the fast path; the agent link still carries streams when no lane is idle (and from
// agents or gateways without lanes), so it must stay byte-exact and half-close correctly too.
test('with lanes off, streams ride the agent link: 64 MiB each way intact, concurrent streams intact', async () => {
  const s = await startStack();
  try {
    await s.startAgent({ agentId: 'no-lanes', platform: 'linux/arm64', upstream: `buildkitd:${echo.address}`, lanes: 0 });
    const { sock, close } = await proxyFor(s, 'h2', 'no-lanes', 'linux/arm64');
    try {
      const big = await echoRoundTrip(await connectUnix(sock), 64 * 1024 * 1024);
      assert.equal(big.received, big.sent);
      const many = await Promise.all(Array.from({ length: 50 }, async () => echoRoundTrip(await connectUnix(sock), 128 * 1024, 32 * 1024)));
      for (const r of many) assert.equal(r.received, r.sent);
      assert.equal(streamsCarriedOn(s, 'lane'), 0);
      assert.equal(streamsCarriedOn(s, 'link'), 51);
      assert.equal(s.gateway.pool.get('no-lanes')?.lanes.size, 0, 'an agent with --lanes 0 opens none');
    } finally {
      await close();
    }
  } finally {
    await s.close();
  }
});

test('a lane carries one stream after another, and more streams at once than idle lanes spill to the link', async () => {
  const { sock, close } = await proxyFor(stack, 'h2', 'reuse');
  try {
    const link = stack.gateway.pool.get('echo-amd64')!;
    await waitFor(() => link.lanes.idleCount >= 2, 10_000, 'two idle lanes (the agent default)');
    const lanesBefore = streamsCarriedOn(stack, 'lane');
    // One at a time: each finds an idle lane, and the lanes come back to the pool after use.
    for (let i = 0; i < 5; i++) {
      const r = await echoRoundTrip(await connectUnix(sock), 1024 * 1024);
      assert.equal(r.received, r.sent);
      await waitFor(() => link.lanes.idleCount >= 2, 10_000, 'the lane back in the pool');
    }
    assert.equal(streamsCarriedOn(stack, 'lane'), lanesBefore + 5);
    assert.ok(link.lanes.size <= 4, `sequential streams reuse lanes rather than open new ones (${link.lanes.size} open)`);
    // A burst: whatever finds no idle lane goes over the link, all intact.
    const linkBefore = streamsCarriedOn(stack, 'link');
    const burst = await Promise.all(Array.from({ length: 40 }, async () => echoRoundTrip(await connectUnix(sock), 64 * 1024, 16 * 1024)));
    for (const r of burst) assert.equal(r.received, r.sent);
    assert.equal(streamsCarriedOn(stack, 'lane') + streamsCarriedOn(stack, 'link'), lanesBefore + 5 + linkBefore + 40);
    assert.ok(streamsCarriedOn(stack, 'link') > linkBefore, 'streams beyond the idle lanes rode the link');
  } finally {
    await close();
  }
});

test('500 concurrent streams through one agent all arrive intact', async () => {
  const { sock, close } = await proxyFor(stack, 'h2', 'many');
  try {
    const results = await Promise.all(
      Array.from({ length: 500 }, async () => {
        const socket = await connectUnix(sock);
        return echoRoundTrip(socket, 256 * 1024, 64 * 1024);
      }),
    );
    for (const r of results) {
      assert.equal(r.receivedBytes, 256 * 1024);
      assert.equal(r.received, r.sent);
    }
  } finally {
    await close();
  }
});

// An upstream that speaks first and half-closes at once, then keeps reading: the client's bytes
// must still reach it after the upstream's end-of-stream has reached the client.
async function startGreeterServer(): Promise<{ address: string; received: Promise<string>; close(): Promise<void> }> {
  let report!: (hash: string) => void;
  const received = new Promise<string>((r) => (report = r));
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    const hash = createHash('sha256');
    let bytes = 0;
    socket.end('greetings\n');
    // Reads slowly: what the client sends is still queued toward it when both directions have
    // ended, and must not be dropped when the agent closes the connection.
    socket.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
      socket.pause();
      setTimeout(() => socket.resume(), 4);
    });
    // The agent also dials spare connections ahead of use, which it closes unused once the
    // greeter ends them: only the connection that carried the client's bytes is reported.
    socket.on('end', () => {
      if (bytes > 0) report(hash.digest('hex'));
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    address: `tcp://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    received,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

for (const [transport, lanes] of [['h2', undefined], ['websocket', undefined], ['h2', 0]] as const) {
  test(`half-close works in both directions over ${transport}${lanes === 0 ? ' on the agent link (lanes off)' : ''}`, async () => {
    const greeter = await startGreeterServer();
    const s = await startStack();
    try {
      await s.startAgent({ agentId: 'greeter', platform: 'linux/arm64', upstream: `buildkitd:${greeter.address}`, ...(lanes === undefined ? {} : { lanes }) });
      if (lanes === undefined) await waitFor(() => (s.gateway.pool.get('greeter')?.lanes.idleCount ?? 0) > 0, 10_000, 'an idle lane');
      const { sock, close } = await proxyFor(s, transport, `half-${transport}`, 'linux/arm64');
      const socket = await connectUnix(sock);
      // Upstream -> client half-close: the greeting arrives, then end-of-stream, while our side is open.
      const greeting = await readAll(socket);
      assert.equal(greeting.toString(), 'greetings\n');
      assert.equal(socket.writable, true, 'our direction is still open after the upstream ended its own');
      // Client -> upstream: everything sent after that still arrives, then our end-of-stream.
      const payload = Buffer.alloc(24 * 1024 * 1024, 7);
      socket.end(payload);
      assert.equal(await greeter.received, createHash('sha256').update(payload).digest('hex'));
      assert.equal(streamsCarriedOn(s, lanes === 0 ? 'link' : 'lane'), 1);
      await close();
    } finally {
      await s.close();
      await greeter.close();
    }
  });
}

// A connection whose bytes are already waiting in the kernel, accepted but not yet read: what a
// client that writes right after connecting looks like to the proxy.
async function connectionWithBytesWaiting(bytes: Buffer): Promise<{ client: net.Socket; accepted: net.Socket; close(): void }> {
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
  const sock = path.join(dir, `waiting-${Math.random().toString(36).slice(2)}.sock`);
  server.listen(sock);
  await once(server, 'listening');
  const acceptedP = once(server, 'connection') as Promise<[net.Socket]>;
  const client = await connectUnix(sock);
  client.on('error', () => {});
  const [accepted] = await acceptedP;
  await new Promise<void>((resolve, reject) => client.write(bytes, (err) => (err ? reject(err) : resolve())));
  return { client, accepted, close: () => server.close() };
}

test('bytes a client sent with its connect leave with the request: the stream costs the client one TLS record, not two', async () => {
  const tap = await startTlsRecordTap(stack.port);
  const client = await tunnelClientFor(stack, { transport: 'h2', project: 'demo', gatewayUrl: `https://127.0.0.1:${tap.port}` });
  const proxy = new LocalProxy(client, 'linux/amd64', log);
  try {
    const exchange = async (payload: Buffer): Promise<void> => {
      const c = await connectionWithBytesWaiting(payload);
      try {
        proxy.adopt(c.accepted);
        const back: Buffer[] = [];
        let got = 0;
        for await (const chunk of c.client) {
          back.push(chunk as Buffer);
          got += (chunk as Buffer).length;
          if (got >= payload.length) break;
        }
        assert.ok(Buffer.concat(back).equals(payload), 'the echo came back intact');
      } finally {
        c.client.destroy();
        c.close();
      }
    };
    // The first stream also opens the HTTP/2 session and acquires the build.
    await exchange(Buffer.from('warm-up'));
    // Quiet: nothing more from the client for a while (its session settings, window updates).
    let seen = -1;
    while (tap.fromClient.length !== seen) {
      seen = tap.fromClient.length;
      await new Promise((r) => setTimeout(r, 300));
    }
    const payload = randomBytes(3000);
    await exchange(payload);
    const records = tap.fromClient.slice(seen).filter((r) => r.contentType === TLS_APPLICATION_DATA);
    assert.ok(records.length > 0, 'the stream crossed the tap');
    // HEADERS alone make a record of a few hundred bytes; with the payload behind them, more than it.
    assert.ok(
      records[0]!.length > payload.length,
      `expected the first record of the stream to carry its HEADERS and the ${payload.length} bytes, got records of ${records.map((r) => r.length).join(', ')} bytes`,
    );
  } finally {
    await proxy.close();
    await client.close();
    await tap.close();
  }
});

test('a local peer that waits to be spoken to still gets its tunnel: it opens without any first bytes', async () => {
  const { sock, close } = await proxyFor(stack, 'h2', 'silent');
  try {
    const before = streamsCarriedOn(stack, 'lane') + streamsCarriedOn(stack, 'link');
    const socket = await connectUnix(sock);
    socket.on('error', () => {});
    await waitFor(() => streamsCarriedOn(stack, 'lane') + streamsCarriedOn(stack, 'link') > before, 5_000, 'the tunnel stream to reach the agent');
    // And it carries what is sent later, both ways.
    socket.write('late');
    const [echoed] = (await once(socket, 'data')) as [Buffer];
    assert.equal(echoed.toString(), 'late');
    socket.destroy();
  } finally {
    await close();
  }
});

test('the agent reconnects after the gateway restarts and service resumes', async () => {
  const s = await startStack();
  try {
    await s.startAgent({ agentId: 'phoenix', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
    await s.restartGateway();
    await waitFor(() => s.gateway.pool.list().some((l) => l.agentId === 'phoenix' && l.description !== undefined), 15_000, 'agent re-registered');
    const { sock, close } = await proxyFor(s, 'h2', 'phoenix');
    const r = await echoRoundTrip(await connectUnix(sock), 1024 * 1024);
    assert.equal(r.received, r.sent);
    await close();
  } finally {
    await s.close();
  }
});
