import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { SocketDuplex } from '../src/socketDuplex.js';

async function socketPair(): Promise<{ a: net.Socket; b: net.Socket; close(): void }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const a = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [b] = await accepted;
  return { a, b, close: () => (a.destroy(), b.destroy(), server.close()) };
}

test('keeps reading the socket while its own reader is paused', async () => {
  const { a, b, close } = await socketPair();
  const duplex = new SocketDuplex(b, 64 * 1024 * 1024);
  duplex.pause();
  const payload = Buffer.alloc(8 * 1024 * 1024, 3);
  a.write(payload);
  // The writer's data all leaves its buffer although nobody consumes on the other side.
  while (duplex.readableLength < payload.length) await new Promise((r) => setTimeout(r, 10));
  assert.equal(a.writableLength, 0);
  assert.equal(b.isPaused(), false);
  close();
});

test('a peer that sends past the allowance is cut off with the reason', async () => {
  const { a, b, close } = await socketPair();
  const duplex = new SocketDuplex(b, 1024 * 1024);
  duplex.pause();
  const failed = once(duplex, 'error') as Promise<[Error]>;
  a.on('error', () => {});
  a.write(Buffer.alloc(4 * 1024 * 1024));
  const [err] = await failed;
  assert.match(err.message, /beyond what HTTP\/2 flow control allows/);
  close();
});

test('bytes written to it reach the peer, and end() half-closes', async () => {
  const { a, b, close } = await socketPair();
  const duplex = new SocketDuplex(b, 1024 * 1024);
  duplex.on('error', () => {});
  const chunks: Buffer[] = [];
  a.on('data', (c: Buffer) => chunks.push(c));
  const ended = once(a, 'end');
  duplex.end(Buffer.from('hello'));
  await ended;
  assert.equal(Buffer.concat(chunks).toString(), 'hello');
  close();
});
