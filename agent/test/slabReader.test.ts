// Dialing an upgrade with a SlabReader (onread): the 101 and what follows it in the same read, a
// refusal's body for its message, and pieces that stay intact while more arrives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { dialUpgrade } from '../src/gatewayDialer.js';
import { SlabReader } from '../src/slabReader.js';
import { AgentError } from '../src/agentError.js';
import { makeTestTls, type TestTls } from './testTls.js';

let pki: TestTls;
before(async () => {
  pki = await makeTestTls();
});
after(async () => {
  await pki.cleanup();
});

async function server(answer: (socket: tls.TLSSocket) => void): Promise<{ url: URL; close(): void }> {
  const srv = tls.createServer({ key: pki.serverKeyPem, cert: pki.serverCertPem }, (socket) => {
    socket.on('error', () => {});
    let head = '';
    const onData = (c: Buffer): void => {
      head += c.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      answer(socket);
    };
    socket.on('data', onData);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { url: new URL(`https://127.0.0.1:${(srv.address() as net.AddressInfo).port}`), close: () => srv.close() };
}

const dial = (url: URL, reader: SlabReader) =>
  dialUpgrade({ gatewayUrl: url, ca: Buffer.from(pki.caCertPem), connectTimeoutMs: 5_000, signal: new AbortController().signal, reader }, '/v1/agent/lane', 'slipway-lane/1', {});

test('bytes in the same read as the 101, and 40 MiB after it, reach consume() intact and in order', async () => {
  const payload = randomBytes(40 * 1024 * 1024);
  const srv = await server((socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: slipway-lane/1\r\n\r\nfirst');
    socket.end(payload);
  });
  try {
    const reader = new SlabReader();
    const { socket } = await dial(srv.url, reader);
    const pieces: Buffer[] = [];
    const ended = once(socket, 'end');
    // Keep every piece without copying: each must still hold its bytes once all have arrived.
    reader.consume((bytes) => pieces.push(bytes));
    await ended;
    const all = Buffer.concat(pieces);
    assert.equal(all.subarray(0, 5).toString(), 'first');
    assert.equal(createHash('sha256').update(all.subarray(5)).digest('hex'), createHash('sha256').update(payload).digest('hex'));
    socket.destroy();
  } finally {
    srv.close();
  }
});

test("a refusal's status and body become the error's message", async () => {
  const srv = await server((socket) => {
    const body = JSON.stringify({ error: { code: 'CONFLICT', message: "agent 'a1' has no link to gateway g2" } });
    socket.end(`HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  });
  try {
    await assert.rejects(dial(srv.url, new SlabReader()), (err: AgentError) => {
      assert.equal(err.code, 'GATEWAY_PROTOCOL');
      assert.match(err.message, /refused the slipway-lane\/1 upgrade: 'HTTP\/1.1 409 Conflict': CONFLICT agent 'a1' has no link to gateway g2/);
      return true;
    });
  } finally {
    srv.close();
  }
});

test('a head that never ends is refused once it passes the limit', async () => {
  const srv = await server((socket) => socket.write(`HTTP/1.1 101 Switching Protocols\r\nX-Pad: ${'p'.repeat(64 * 1024)}`));
  try {
    await assert.rejects(dial(srv.url, new SlabReader()), (err: AgentError) => err.code === 'GATEWAY_PROTOCOL' && /without ending the HTTP response head/.test(err.message));
  } finally {
    srv.close();
  }
});
