// Lanes (proto laneFrames.ts): the data connections agents open beside their link. A real gateway
// and agent, and, where a test needs an agent that misbehaves, a lane opened by hand with the key
// the gateway gave the real agent's link.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import fs from 'node:fs';
import { once } from 'node:events';
import { AGENT_LANE_PATH, LANE_UPGRADE_PROTOCOL, LaneFrameParser, LaneFrameType, laneControlFrame, laneFrameHeader, type LaneOpen } from '@slipway/proto';
import type { CliError } from '@slipway/cli';
import { startStack, startEchoServer, tunnelClientFor, waitFor, type SlipwayStack, type EchoServer } from '@slipway/e2e';

let stack: SlipwayStack;
let echo: EchoServer;
let ca: Buffer;

before(async () => {
  echo = await startEchoServer();
  stack = await startStack();
  ca = fs.readFileSync(stack.caPath);
  // No lanes of its own: the only lanes this replica holds for it are the ones a test opens.
  await stack.startAgent({ agentId: 'laneless', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}`, lanes: 0 });
});

after(async () => {
  await stack.close();
  await echo.close();
});

// Opens a lane by hand; resolves with the socket after the 101, or with the refusal's text.
async function openLane(headers: Record<string, string>): Promise<{ socket: tls.TLSSocket; status: number; text: string }> {
  const socket = tls.connect({ host: '127.0.0.1', port: stack.port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.write(`GET ${AGENT_LANE_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${LANE_UPGRADE_PROTOCOL}\r\n${lines}\r\n`);
  let text = '';
  for (;;) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    text += chunk.toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    if (end < 0) continue;
    const status = Number(text.slice(9, 12));
    if (status === 101) {
      socket.pause();
      const rest = Buffer.from(text.slice(end + 4), 'latin1');
      if (rest.length > 0) socket.unshift(rest);
      return { socket, status, text: text.slice(0, end) };
    }
    if (socket.readableEnded) return { socket, status, text };
    for await (const more of socket) text += (more as Buffer).toString('latin1');
    return { socket, status, text };
  }
}

function laneKeyOf(agentId: string): string {
  const link = stack.gateway.pool.get(agentId);
  assert.ok(link, `agent ${agentId} is linked`);
  return link.laneKey;
}

// Reads frames off a hand-made lane.
function frames(socket: tls.TLSSocket): { next(): Promise<{ type: number; payload: Buffer }> } {
  const queue: Array<{ type: number; payload: Buffer }> = [];
  let wake: (() => void) | undefined;
  const parser = new LaneFrameParser({
    data: (bytes) => queue.push({ type: LaneFrameType.DATA, payload: Buffer.from(bytes) }),
    control: (type, payload) => queue.push({ type, payload }),
  });
  socket.on('data', (chunk: Buffer) => {
    parser.push(chunk);
    wake?.();
  });
  socket.resume();
  return {
    async next() {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      return queue.shift()!;
    },
  };
}

test('a lane with a wrong key is refused with 401 and never joins the link', async () => {
  const answer = await openLane({ 'slipway-agent-id': 'laneless', 'slipway-lane-key': 'A'.repeat(32) });
  assert.equal(answer.status, 401);
  assert.match(answer.text, /UNAUTHENTICATED/);
  assert.match(answer.text, /wrong slipway-lane-key/);
  assert.equal(stack.gateway.pool.get('laneless')?.lanes.size, 0);
});

test('a lane for an agent with no link to this replica is refused with 409', async () => {
  const answer = await openLane({ 'slipway-agent-id': 'nobody', 'slipway-lane-key': laneKeyOf('laneless') });
  assert.equal(answer.status, 409);
  assert.match(answer.text, /agent 'nobody' has no link to gateway/);
});

test('a lane that reaches another replica than the one it is for is refused with 409 naming both', async () => {
  const answer = await openLane({ 'slipway-agent-id': 'laneless', 'slipway-lane-key': laneKeyOf('laneless'), 'slipway-gateway-id': 'replica-b' });
  assert.equal(answer.status, 409);
  assert.match(answer.text, /is for gateway replica-b but reached gateway /);
  assert.equal(stack.gateway.pool.get('laneless')?.lanes.size, 0);
});

test('a stream on a lane: OPEN names it, its bytes follow at once, ACCEPT, DATA and END come back', async () => {
  const { socket, status } = await openLane({ 'slipway-agent-id': 'laneless', 'slipway-lane-key': laneKeyOf('laneless') });
  assert.equal(status, 101);
  const lane = frames(socket);
  const client = await tunnelClientFor(stack, { transport: 'h2' });
  try {
    const tunnel = await client.open('linux/amd64');
    tunnel.writable.end('ping');
    const open = await lane.next();
    assert.equal(open.type, LaneFrameType.OPEN);
    const request = JSON.parse(open.payload.toString()) as LaneOpen;
    assert.equal(request.project, 'demo');
    assert.equal(request.platform, 'linux/amd64');
    // The client's bytes came behind OPEN without waiting for an answer.
    const data = await lane.next();
    assert.deepEqual([data.type, data.payload.toString()], [LaneFrameType.DATA, 'ping']);
    assert.equal((await lane.next()).type, LaneFrameType.END);
    socket.write(laneFrameHeader(LaneFrameType.ACCEPT, 0));
    socket.write(Buffer.concat([laneFrameHeader(LaneFrameType.DATA, 4), Buffer.from('pong')]));
    socket.write(laneFrameHeader(LaneFrameType.END, 0));
    const chunks: Buffer[] = [];
    tunnel.readable.on('data', (c: Buffer) => chunks.push(c));
    const [error] = (await once(tunnel, 'remote-end')) as [CliError | undefined];
    assert.equal(error, undefined, 'a clean end');
    assert.equal(Buffer.concat(chunks).toString(), 'pong');
    // Both directions ended: the lane waits for the next stream.
    await waitFor(() => stack.gateway.pool.get('laneless')?.lanes.idleCount === 1, 5_000, 'the lane idle again');
  } finally {
    await client.close();
    socket.destroy();
    await waitFor(() => stack.gateway.pool.get('laneless')?.lanes.size === 0, 5_000, 'the lane gone');
  }
});

for (const [what, reply, expected] of [
  ['ERROR instead of ACCEPT is the refusal the client sees', laneControlFrame(LaneFrameType.ERROR, { code: 'UPSTREAM_UNAVAILABLE', message: 'buildkitd is not running' }), /^TUNNEL_REFUSED: .*buildkitd is not running \(UPSTREAM_UNAVAILABLE\)/],
  ['a frame of an unknown type fails the stream as AGENT_LOST', Buffer.from([9, 0, 0, 0, 0]), /^AGENT_LOST: .*broke the lane protocol: unknown lane frame type 9/],
  ['DATA before ACCEPT fails the stream as AGENT_LOST', Buffer.concat([laneFrameHeader(LaneFrameType.DATA, 1), Buffer.from('x')]), /^AGENT_LOST: .*DATA before ACCEPT/],
  ['an oversized control frame fails the stream as AGENT_LOST', laneFrameHeader(LaneFrameType.ERROR, 1 << 20), /^AGENT_LOST: .*control frames are at most/],
  ['a lane that closes mid-stream fails the stream as AGENT_LOST', undefined, /^AGENT_LOST: .*lane closed before the stream completed/],
] as const) {
  test(`from the agent's end of a lane: ${what}`, async () => {
    const { socket } = await openLane({ 'slipway-agent-id': 'laneless', 'slipway-lane-key': laneKeyOf('laneless') });
    const lane = frames(socket);
    const client = await tunnelClientFor(stack, { transport: 'h2' });
    try {
      const opening = client.open('linux/amd64');
      assert.equal((await lane.next()).type, LaneFrameType.OPEN);
      if (reply === undefined) socket.destroy();
      else socket.write(reply);
      const outcome = await opening.then(
        async (tunnel) => {
          tunnel.readable.resume();
          const [error] = (await once(tunnel, 'remote-end')) as [CliError | undefined];
          return error;
        },
        (err: CliError) => err,
      );
      assert.ok(outcome, 'the stream failed');
      assert.match(`${outcome.code}: ${outcome.message}`, expected);
      await waitFor(() => stack.gateway.pool.get('laneless')?.lanes.size === 0, 5_000, 'the broken lane closed');
    } finally {
      await client.close();
      socket.destroy();
    }
  });
}
