import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { parseUpstream } from '../src/upstream.js';
import { UpstreamSpares } from '../src/upstreamSpares.js';

// A real TCP server standing in for BuildKit: like an HTTP/2 server it speaks first (a greeting
// on accept), then echoes. `onAccept` lets a case close some connections itself.
async function greetingServer(onAccept: (socket: net.Socket, index: number) => void = () => {}) {
  const accepted: net.Socket[] = [];
  const closed: number[] = [];
  const server = net.createServer((socket) => {
    const index = accepted.length;
    accepted.push(socket);
    socket.on('error', () => {});
    socket.on('close', () => closed.push(index));
    socket.write(`HELLO ${index}\n`);
    socket.on('data', (chunk) => socket.write(chunk));
    onAccept(socket, index);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    upstream: parseUpstream(`buildkitd:tcp://127.0.0.1:${port}`),
    accepted,
    closed,
    async close() {
      for (const s of accepted) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), `timed out waiting for ${what}`);
}

/** Reads from a dialed socket as the tunnel handler does (adopting it first) until `text` has arrived. */
async function readUntil(socket: net.Socket, text: string): Promise<string> {
  socket.removeAllListeners('error');
  socket.on('error', () => {});
  let got = '';
  socket.setEncoding('utf8');
  socket.resume();
  for await (const chunk of socket) {
    got += chunk as string;
    if (got.includes(text)) break;
  }
  return got;
}

test('the first dial is made on demand; the next one takes a spare that was dialed ahead, with what the upstream sent it meanwhile', async () => {
  const server = await greetingServer();
  const spares = new UpstreamSpares(server.upstream, 1, 60_000);
  try {
    const first = await spares.dial();
    assert.deepEqual(spares.stats.misses, 1);
    await until('the spare to be dialed', () => server.accepted.length === 2 && spares.stats.waiting === 1);
    // The spare's greeting has certainly arrived by now; it must not be lost.
    await new Promise((r) => setTimeout(r, 50));
    const second = await spares.dial();
    assert.equal(spares.stats.hits, 1);
    second.write('ping\n');
    const seen = await readUntil(second, 'ping\n');
    assert.equal(seen, 'HELLO 1\nping\n', 'the spare starts with the bytes the upstream sent before it was used');
    // Taking a spare dials the next one.
    await until('a new spare', () => server.accepted.length === 3);
    first.destroy();
    second.destroy();
  } finally {
    spares.close();
    await server.close();
  }
});

test('the next spare is dialed after the stream that took one has had its opening turns, not during them', async () => {
  const server = await greetingServer();
  const spares = new UpstreamSpares(server.upstream, 1, 60_000);
  try {
    const first = await spares.dial();
    await until('the spare to be dialed', () => spares.stats.waiting === 1);
    const second = await spares.dial();
    assert.equal(spares.stats.hits, 1);
    // The turn the stream opened in, and the next (where the upstream's first answer usually is).
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual([spares.stats.waiting, spares.stats.dialing], [0, 0], 'no dial competes with the opening exchange');
    await until('the next spare', () => spares.stats.waiting === 1);
    assert.equal(server.accepted.length, 3);
    first.destroy();
    second.destroy();
  } finally {
    spares.close();
    await server.close();
  }
});

test('a spare the upstream closed is dropped: the stream dials afresh instead of getting a dead socket', async () => {
  // The second connection (the first spare) is closed by the upstream right away.
  const server = await greetingServer((socket, index) => {
    if (index === 1) socket.destroy();
  });
  const spares = new UpstreamSpares(server.upstream, 1, 60_000);
  try {
    (await spares.dial()).destroy();
    await until('the upstream to close the spare', () => server.closed.includes(1));
    await until('the agent side to drop it', () => spares.stats.waiting === 0 || server.accepted.length >= 3);
    const socket = await spares.dial();
    socket.write('ping\n');
    const seen = await readUntil(socket, 'ping\n');
    assert.match(seen, /^HELLO [23]\nping\n$/);
    socket.destroy();
  } finally {
    spares.close();
    await server.close();
  }
});

test('a spare older than its maximum age is closed, and the next stream dials on demand', async () => {
  const server = await greetingServer();
  const spares = new UpstreamSpares(server.upstream, 1, 100);
  try {
    (await spares.dial()).destroy();
    await until('the spare to be dialed', () => server.accepted.length === 2);
    await until('the spare to be closed once too old', () => server.closed.includes(1));
    assert.equal(spares.stats.waiting, 0);
    const socket = await spares.dial();
    assert.equal(spares.stats.hits, 0);
    assert.equal(spares.stats.misses, 2);
    socket.destroy();
  } finally {
    spares.close();
    await server.close();
  }
});

test('close() closes the spares and no new one is dialed; with 0 spares nothing is dialed ahead', async () => {
  const server = await greetingServer();
  const spares = new UpstreamSpares(server.upstream, 2, 60_000);
  (await spares.dial()).destroy();
  await until('two spares', () => spares.stats.waiting === 2);
  spares.close();
  await until('the spares to be closed', () => server.closed.includes(1) && server.closed.includes(2));
  const none = new UpstreamSpares(server.upstream, 0, 60_000);
  const before = server.accepted.length;
  (await none.dial()).destroy();
  (await none.dial()).destroy();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(server.accepted.length, before + 2, 'exactly one connection per dial');
  none.close();
  await server.close();
});

test('a spare that was never dialed (upstream down) leaves the stream to dial and report the failure itself', async () => {
  const server = await greetingServer();
  const spares = new UpstreamSpares(server.upstream, 1, 60_000);
  await server.close();
  await assert.rejects(spares.dial(), { code: 'UPSTREAM_UNAVAILABLE' });
  await assert.rejects(spares.dial(), { code: 'UPSTREAM_UNAVAILABLE' });
  spares.close();
});
