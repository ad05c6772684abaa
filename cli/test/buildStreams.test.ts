import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { methodCodec } from '../src/build/buildkitProtos.js';
import type { GrpcClientCall } from '../src/build/grpcClientCall.js';
import { SessionByteStream, type BytesMessage } from '../src/build/sessionByteStream.js';
import { TunnelSocket } from '../src/build/tunnelSocket.js';

// The two streams under the build's HTTP/2 connections: TunnelSocket (the connection to BuildKit
// on the tunnel) and SessionByteStream (the session's connection in Control.Session's messages).

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const MiB = 1024 * 1024;

/** A tunnel whose writes complete only when released, and whose far side pushes when told. */
function slowTunnel(): { tunnel: Duplex; writes: Buffer[]; release(): void } {
  const writes: Buffer[] = [];
  const pending: Array<() => void> = [];
  const tunnel = new Duplex({
    read() {},
    writev(chunks, callback) {
      writes.push(Buffer.concat(chunks.map((c) => c.chunk as Buffer)));
      pending.push(callback);
    },
  });
  return { tunnel, writes, release: () => pending.splice(0).forEach((cb) => cb()) };
}

test('TunnelSocket: a corked batch reaches the tunnel as one write, in order; writes are done while under 4 MiB is unsent, then wait for the tunnel', async () => {
  const { tunnel, writes, release } = slowTunnel();
  const socket = new TunnelSocket(tunnel, 64 * MiB);
  const chunks = Array.from({ length: 100 }, (_, i) => randomBytes(i % 2 === 0 ? 9 : 16 * 1024));
  let firstDone = false;
  socket.cork();
  for (const c of chunks) socket.write(c);
  socket.uncork();
  socket.write(Buffer.alloc(0), () => (firstDone = true));
  await turn();
  assert.equal(writes.length, 1, 'one batch, one write');
  assert.deepEqual(writes[0], Buffer.concat(chunks));
  assert.equal(firstDone, true, 'taken while little is unsent, before the tunnel completed it');

  let bigDone = false;
  socket.write(randomBytes(5 * MiB), () => (bigDone = true));
  await turn();
  assert.equal(bigDone, false, 'more than 4 MiB unsent: the write waits');
  release();
  await turn();
  assert.equal(bigDone, false, 'the first batch went, the 5 MiB are still unsent');
  release();
  await turn();
  assert.equal(bigDone, true, 'the tunnel sent it: the write is done');
  assert.equal(Buffer.concat(writes).length, Buffer.concat(chunks).length + 5 * MiB);
});

test('TunnelSocket: it reads the tunnel while its writes wait, and cuts the link past what flow control allows', async () => {
  const { tunnel } = slowTunnel();
  const socket = new TunnelSocket(tunnel, 2 * MiB);
  socket.pause();
  socket.write(randomBytes(6 * MiB));
  tunnel.push(randomBytes(MiB));
  await turn();
  assert.equal(socket.readableLength, MiB, 'read on although nobody reads it and its write is pending');
  tunnel.push(randomBytes(2 * MiB));
  const [err] = (await once(socket, 'error')) as [Error];
  assert.match(err.message, /beyond what HTTP\/2 flow control allows/);
});

/** A Control.Session call that records the messages written and completes them when released. */
function fakeSessionCall(): { call: GrpcClientCall<BytesMessage, BytesMessage>; messages: Buffer[]; release(): void; arrive(data: Buffer): void; finish(): void; ended(): boolean } {
  const messages: Buffer[] = [];
  const pending: Array<() => void> = [];
  const incoming: Buffer[] = [];
  let wake: (() => void) | undefined;
  let over = false;
  let endCalled = false;
  const fake = {
    writeParts(parts: readonly Buffer[]): Promise<void> {
      messages.push(Buffer.concat(parts));
      return new Promise<void>((resolve) => pending.push(resolve));
    },
    end(): void {
      endCalled = true;
    },
    async *messages(): AsyncIterable<BytesMessage> {
      for (;;) {
        if (incoming.length > 0) {
          yield { data: incoming.shift()! };
          continue;
        }
        if (over) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    call: fake as unknown as GrpcClientCall<BytesMessage, BytesMessage>,
    messages,
    release: () => pending.splice(0).forEach((resolve) => resolve()),
    arrive: (data) => {
      incoming.push(data);
      poke();
    },
    finish: () => {
      over = true;
      poke();
    },
    ended: () => endCalled,
  };
}

const bytesCodec = methodCodec<BytesMessage, BytesMessage>('moby.buildkit.v1.Control', 'Session');

test('SessionByteStream: a batch goes as BytesMessages of 1 MiB at most that decode to the bytes in order; writes wait past 4 MiB unsent', async () => {
  const { call, messages, release } = fakeSessionCall();
  const stream = new SessionByteStream(call, 64 * MiB);
  const chunks = Array.from({ length: 300 }, (_, i) => randomBytes(i % 2 === 0 ? 9 : 16 * 1024));
  let done = false;
  stream.cork();
  for (const c of chunks) stream.write(c);
  stream.uncork();
  stream.write(Buffer.alloc(0), () => (done = true));
  await turn();
  const decoded = messages.map((m) => bytesCodec.decodeRequest(m).data);
  assert.deepEqual(Buffer.concat(decoded), Buffer.concat(chunks));
  assert.ok(decoded.every((d) => d.length <= MiB));
  assert.ok(messages.length <= 6, `${chunks.length} chunks became ${messages.length} messages`);
  assert.equal(done, true, 'under 4 MiB unsent: done before the call sent it');

  let bigDone = false;
  stream.write(randomBytes(5 * MiB), () => (bigDone = true));
  await turn();
  assert.equal(bigDone, false, 'more than 4 MiB unsent: the write waits');
  release();
  await turn();
  assert.equal(bigDone, true);
});

test('SessionByteStream: what BuildKit sends is read whether or not anyone reads it, up to the limit; the end goes both ways', async () => {
  const { call, arrive, ended } = fakeSessionCall();
  const stream = new SessionByteStream(call, 2 * MiB);
  stream.pause();
  arrive(randomBytes(MiB));
  arrive(Buffer.alloc(0));
  await turn();
  assert.equal(stream.readableLength, MiB);
  stream.end();
  await turn();
  assert.equal(ended(), true, 'ending the stream ends the call');
  arrive(randomBytes(2 * MiB));
  const [err] = (await once(stream, 'error')) as [Error];
  assert.match(err.message, /beyond what HTTP\/2 flow control allows/);

  const second = fakeSessionCall();
  const other = new SessionByteStream(second.call, 2 * MiB);
  const data = randomBytes(1000);
  second.arrive(data);
  second.finish();
  const got: Buffer[] = [];
  for await (const chunk of other) got.push(chunk as Buffer);
  assert.deepEqual(Buffer.concat(got), data);
});
