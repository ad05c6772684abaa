// The agent's end of a lane against a gateway end driven by the test, over real TLS, with a real
// upstream TCP server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { LaneFrameParser, LaneFrameType, laneControlFrame, laneDataHeader, laneFrameHeader, type LaneOpen } from '@slipway/proto';
import { GatewayLane } from '../src/gatewayLane.js';
import { AgentError } from '../src/agentError.js';
import { SlabReader } from '../src/slabReader.js';
import { makeTestTls, type TestTls } from './testTls.js';

let pki: TestTls;
before(async () => {
  pki = await makeTestTls();
});
after(async () => {
  await pki.cleanup();
});

interface Frames {
  next(): Promise<{ type: number; payload: Buffer }>;
  closed: Promise<void>;
}

function framesOf(socket: tls.TLSSocket): Frames {
  const queue: Array<{ type: number; payload: Buffer }> = [];
  let wake: (() => void) | undefined;
  const parser = new LaneFrameParser({
    data: (bytes) => {
      // Consecutive DATA pieces are one stream of bytes: join them for the test's reading.
      const last = queue[queue.length - 1];
      if (last?.type === LaneFrameType.DATA) last.payload = Buffer.concat([last.payload, bytes]);
      else queue.push({ type: LaneFrameType.DATA, payload: Buffer.from(bytes) });
    },
    control: (type, payload) => queue.push({ type, payload }),
  });
  socket.on('data', (chunk: Buffer) => {
    parser.push(chunk);
    wake?.();
  });
  return {
    async next() {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      return queue.shift()!;
    },
    closed: new Promise((r) => socket.once('close', () => r())),
  };
}

// A gateway end (the TLS server side, driven by the test) and an agent end (GatewayLane).
async function lanePair(): Promise<{
  gateway: tls.TLSSocket;
  frames: Frames;
  lane: GatewayLane;
  events: { opened: LaneOpen[]; idle: number; closed: number };
  close(): void;
}> {
  const server = tls.createServer({ key: pki.serverKeyPem, cert: pki.serverCertPem });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>;
  const reader = new SlabReader();
  // Node's typings lack tls.connect's onread (documented since Node 8.10 for net, passed through by tls).
  const options: tls.ConnectionOptions & { onread: SlabReader['onread'] } = { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, ca: pki.caCertPem, onread: reader.onread };
  const client = tls.connect(options);
  client.on('error', () => {});
  await once(client, 'secureConnect');
  const [gateway] = await accepted;
  gateway.on('error', () => {});
  const events = { opened: [] as LaneOpen[], idle: 0, closed: 0 };
  const lane = new GatewayLane(client, reader, {
    open: (_l, request) => events.opened.push(request),
    idle: () => events.idle++,
    closed: () => events.closed++,
  });
  return {
    gateway,
    frames: framesOf(gateway),
    lane,
    events,
    close: () => {
      gateway.destroy();
      client.destroy();
      server.close();
    },
  };
}

async function echoServer(): Promise<{ connect(): Promise<net.Socket>; close(): void }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.on('data', (c: Buffer) => s.write(c));
    s.on('end', () => s.end());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    connect: async () => {
      const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      s.on('error', () => {});
      await once(s, 'connect');
      return s;
    },
    close: () => server.close(),
  };
}

const OPEN: LaneOpen = { streamId: 's1', project: 'demo', platform: 'linux/amd64' };

test('a stream: bytes sent behind OPEN reach the upstream once it is connected; replies come back as DATA; after END both ways the lane is idle and takes the next', async () => {
  const pair = await lanePair();
  const echo = await echoServer();
  try {
    for (const word of ['first', 'second']) {
      // OPEN, bytes and END in one write: the agent must hold them until the upstream is up.
      pair.gateway.write(Buffer.concat([laneControlFrame(LaneFrameType.OPEN, { ...OPEN, streamId: word }), laneDataHeader(word.length), Buffer.from(word), laneFrameHeader(LaneFrameType.END, 0)]));
      while (pair.events.opened.length === 0) await new Promise((r) => setTimeout(r, 5));
      assert.equal(pair.events.opened.shift()?.streamId, word);
      let done = false;
      pair.lane.serve(await echo.connect(), () => (done = true), (err) => new AgentError('UPSTREAM_FAILED', err.message));
      assert.equal((await pair.frames.next()).type, LaneFrameType.ACCEPT);
      const data = await pair.frames.next();
      assert.deepEqual([data.type, data.payload.toString()], [LaneFrameType.DATA, word]);
      assert.equal((await pair.frames.next()).type, LaneFrameType.END);
      while (!done) await new Promise((r) => setTimeout(r, 5));
      assert.equal(pair.lane.isIdle, true);
    }
    assert.equal(pair.events.idle, 2);
    assert.equal(pair.events.closed, 0);
  } finally {
    pair.close();
    echo.close();
  }
});

test('bytes that came with OPEN are handed to the upstream as serve() starts, not held for the end of the turn with ACCEPT', async () => {
  const pair = await lanePair();
  const echo = await echoServer();
  try {
    const first = Buffer.from('first bytes of the stream');
    pair.gateway.write(Buffer.concat([laneControlFrame(LaneFrameType.OPEN, OPEN), laneDataHeader(first.length), first]));
    while (pair.events.opened.length === 0) await new Promise((r) => setTimeout(r, 5));
    const upstream = await echo.connect();
    pair.lane.serve(upstream, () => {}, (err) => new AgentError('UPSTREAM_FAILED', err.message));
    // Written through to the kernel already: nothing corked or queued behind this turn.
    assert.equal(upstream.writableCorked, 0);
    assert.equal(upstream.writableLength, 0);
    assert.equal(upstream.bytesWritten, first.length);
    assert.equal((await pair.frames.next()).type, LaneFrameType.ACCEPT);
    const data = await pair.frames.next();
    assert.deepEqual([data.type, data.payload.toString()], [LaneFrameType.DATA, first.toString()]);
  } finally {
    pair.close();
    echo.close();
  }
});

for (const [what, bytes, expected] of [
  ['an unknown frame type', Buffer.from([9, 0, 0, 0, 0]), /unknown lane frame type 9/],
  ['DATA on an idle lane', Buffer.concat([laneDataHeader(1), Buffer.from('x')]), /DATA on a lane that is idle/],
  ['ACCEPT, which only an agent sends', laneFrameHeader(LaneFrameType.ACCEPT, 0), /frame type 3 is not one a gateway sends/],
  ['an OPEN that is not JSON', Buffer.concat([laneFrameHeader(LaneFrameType.OPEN, 3), Buffer.from('{{{')]), /OPEN frame is not JSON/],
] as const) {
  test(`a gateway that sends ${what} gets an ERROR naming it, and the lane closes`, async () => {
    const pair = await lanePair();
    try {
      pair.gateway.write(bytes);
      const error = await pair.frames.next();
      assert.equal(error.type, LaneFrameType.ERROR);
      const body = JSON.parse(error.payload.toString()) as { code: string; message: string };
      assert.equal(body.code, 'INTERNAL');
      assert.match(body.message, expected);
      await pair.frames.closed;
      assert.equal(pair.events.closed, 1);
      assert.equal(pair.events.opened.length, 0);
    } finally {
      pair.close();
    }
  });
}

test('an upstream that fails mid-stream is reported as ERROR UPSTREAM_FAILED, and a refused stream as ERROR with its code', async () => {
  const pair = await lanePair();
  const server = net.createServer((s) => {
    s.on('error', () => {});
    // Answer the first bytes, then reset the connection.
    s.once('data', () => s.write('partial', () => setTimeout(() => s.resetAndDestroy(), 20)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    pair.gateway.write(laneControlFrame(LaneFrameType.OPEN, OPEN));
    while (pair.events.opened.length === 0) await new Promise((r) => setTimeout(r, 5));
    const upstream = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
    upstream.on('error', () => {});
    await once(upstream, 'connect');
    let done = false;
    pair.lane.serve(upstream, () => (done = true), (err) => new AgentError('UPSTREAM_FAILED', `upstream failed: ${err.message}`));
    assert.equal((await pair.frames.next()).type, LaneFrameType.ACCEPT);
    pair.gateway.write(Buffer.concat([laneDataHeader(2), Buffer.from('go')]));
    const data = await pair.frames.next();
    assert.equal(data.payload.toString(), 'partial');
    const error = await pair.frames.next();
    assert.equal(error.type, LaneFrameType.ERROR);
    assert.match(error.payload.toString(), /"code":"UPSTREAM_FAILED".*ECONNRESET/);
    await pair.frames.closed;
    assert.equal(done, true);
  } finally {
    pair.close();
    server.close();
  }
  const refused = await lanePair();
  try {
    refused.gateway.write(laneControlFrame(LaneFrameType.OPEN, OPEN));
    while (refused.events.opened.length === 0) await new Promise((r) => setTimeout(r, 5));
    refused.lane.fail(new AgentError('DRAINING', 'agent is shutting down'));
    const error = await refused.frames.next();
    assert.deepEqual(JSON.parse(error.payload.toString()), { code: 'DRAINING', message: 'agent is shutting down' });
    await refused.frames.closed;
  } finally {
    refused.close();
  }
});

test("an upstream that ended its side first and reads slowly still gets every byte the gateway sent before END", async () => {
  const pair = await lanePair();
  let report!: (hash: string) => void;
  const received = new Promise<string>((r) => (report = r));
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    // Half-closes at once, then reads slowly, so the agent's writes to it are still queued when
    // both directions have ended.
    s.end();
    const hash = createHash('sha256');
    s.on('data', (c: Buffer) => {
      hash.update(c);
      s.pause();
      setTimeout(() => s.resume(), 4);
    });
    s.on('end', () => report(hash.digest('hex')));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    pair.gateway.write(laneControlFrame(LaneFrameType.OPEN, OPEN));
    while (pair.events.opened.length === 0) await new Promise((r) => setTimeout(r, 5));
    const upstream = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, allowHalfOpen: true });
    upstream.on('error', () => {});
    await once(upstream, 'connect');
    pair.lane.serve(upstream, () => {}, (err) => new AgentError('UPSTREAM_FAILED', err.message));
    assert.equal((await pair.frames.next()).type, LaneFrameType.ACCEPT);
    assert.equal((await pair.frames.next()).type, LaneFrameType.END);
    const payload = randomBytes(24 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 64 * 1024) {
      const piece = payload.subarray(i, i + 64 * 1024);
      pair.gateway.write(Buffer.concat([laneDataHeader(piece.length), piece]));
    }
    pair.gateway.write(laneFrameHeader(LaneFrameType.END, 0));
    assert.equal(await received, createHash('sha256').update(payload).digest('hex'));
  } finally {
    pair.close();
    server.close();
  }
});
