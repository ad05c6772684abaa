import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, mkdir, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PathPatterns } from '../src/build/pathPatterns.js';
import { ContextSource, contextSharedKey, listContext } from '../src/build/contextSource.js';
import { methodCodec } from '../src/build/buildkitProtos.js';
import { GrpcClientCall } from '../src/build/grpcClientCall.js';
import { GrpcStatusError } from '../src/build/grpcStatusError.js';
import { SessionServer } from '../src/build/sessionServer.js';
import {
  PACKET_DATA,
  PACKET_FIN,
  PACKET_REQ,
  PACKET_STAT,
  statPacket,
  dataPacketHeader,
  decodePacket,
  encodePacket,
  goModeOf,
  kindOf,
  unixPermOf,
  type Packet,
  type WireStat,
} from '../src/build/fsutilPacket.js';

test('.dockerignore patterns: folders, wildcards, ** and exceptions, the last match winning', () => {
  const p = new PathPatterns(['node_modules', '*.log', '**/*.tmp', 'docs/**', '!docs/keep.md', '# a comment', '/abs.txt']);
  assert.equal(p.matches('node_modules'), true);
  assert.equal(p.matches('node_modules/x/y.js'), true, 'a folder pattern takes what is inside');
  assert.equal(p.matches('a.log'), true);
  assert.equal(p.matches('sub/a.log'), false, '* does not cross folders');
  assert.equal(p.matches('deep/er/b.tmp'), true);
  assert.equal(p.matches('docs/x.md'), true);
  assert.equal(p.matches('docs/keep.md'), false, '! re-includes');
  assert.equal(p.matches('abs.txt'), true, 'a leading slash is the context root');
  assert.equal(p.matches('src/main.ts'), false);
  assert.equal(p.mayHoldMatches('docs', true), true);
  assert.equal(p.mayHoldMatches('src', true), false);
});

test('the walk sends folders before what they hold, in Go byte order, without ignored paths', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-ctx-'));
  try {
    await mkdir(path.join(dir, 'a'));
    await writeFile(path.join(dir, 'a', 'b'), 'b');
    await writeFile(path.join(dir, 'a.b'), 'ab');
    await writeFile(path.join(dir, 'Z'), 'z');
    await writeFile(path.join(dir, 'run.sh'), '#!/bin/sh\n');
    await chmod(path.join(dir, 'run.sh'), 0o755);
    await writeFile(path.join(dir, 'x.tmp'), 'tmp');
    await symlink('run.sh', path.join(dir, 'link'));
    await mkdir(path.join(dir, 'ignored'));
    await writeFile(path.join(dir, 'ignored', 'f'), 'f');
    await writeFile(path.join(dir, 'ignored', 'keep'), 'k');
    const entries = await listContext(dir, new PathPatterns([]), new PathPatterns(['*.tmp', 'ignored', '!ignored/keep']));
    assert.deepEqual(
      entries.map((e) => e.stat.path),
      // 'a' and its contents come before 'a.b' although '.' < '/': folders are walked as they are met.
      ['Z', 'a', 'a/b', 'a.b', 'ignored', 'ignored/keep', 'link', 'run.sh'],
    );
    const byPath = new Map(entries.map((e) => [e.stat.path, e.stat]));
    assert.equal(kindOf(byPath.get('a')!.mode), 'dir');
    assert.equal(kindOf(byPath.get('link')!.mode), 'symlink');
    assert.equal(byPath.get('link')!.linkname, 'run.sh');
    assert.equal(kindOf(byPath.get('run.sh')!.mode), 'file');
    assert.equal(unixPermOf(byPath.get('run.sh')!.mode), 0o755);
    assert.equal(byPath.get('a.b')!.size, '2');
    const only = await listContext(dir, new PathPatterns(['a/b']), new PathPatterns([]));
    assert.deepEqual(
      only.map((e) => e.stat.path),
      ['a', 'a/b'],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("Go's FileMode bits round-trip through Unix modes", () => {
  assert.equal(goModeOf(0o040755) >>> 0, (2 ** 31 + 0o755) >>> 0);
  assert.equal(goModeOf(0o120777), 2 ** 27 + 0o777);
  assert.equal(unixPermOf(goModeOf(0o104755)), 0o4755);
  assert.equal(kindOf(goModeOf(0o100644)), 'file');
  assert.equal(kindOf(goModeOf(0o010644)), 'other');
});

test('a DATA packet\'s hand-encoded header followed by its payload is what protobuf encodes (zero fields left out, as proto3 may), and decodes back', () => {
  for (const id of [0, 1, 127, 128, 16_383, 16_384, 300_000, 2 ** 32 - 1]) {
    for (const size of [0, 1, 127, 128, 16_384, 1024 * 1024]) {
      const data = randomBytes(size);
      const bytes = Buffer.concat([dataPacketHeader(id, size), data]);
      // protobufjs also writes fields it was given at their zero value; proto3 reads both the same.
      if (id !== 0 && size !== 0) assert.deepEqual(bytes, encodePacket({ type: PACKET_DATA, ID: id, data }), `id ${id}, ${size} bytes`);
      const back = decodePacket(bytes);
      assert.equal(back.type, PACKET_DATA);
      assert.equal(back.ID, id);
      assert.deepEqual(back.data, data);
    }
  }
});

test("a STAT packet's hand encoding is what protobuf encodes, and decodes back to the same Stat (sizes, negative and 64-bit times, UTF-8 names, links, xattrs, zero fields)", () => {
  const full: WireStat = {
    path: 'dir/naïve ✓.txt',
    mode: (2 ** 31 + 0o4755) >>> 0,
    uid: 2 ** 32 - 2,
    gid: 1000,
    size: '10485760',
    modTime: '1764280000123456789',
    linkname: '../target',
    devmajor: '8',
    devminor: '1',
    xattrs: { 'user.a': Buffer.from('one'), 'security.capability': randomBytes(20) },
  };
  // Every Stat field set: protobufjs writes the same bytes, after the packet's type 0 (08 00), a
  // zero field it writes because it was given one and proto3 lets the hand encoding leave out.
  assert.deepEqual(Buffer.concat([Buffer.from([0x08, 0x00]), statPacket(full)]), encodePacket({ type: PACKET_STAT, stat: full }));
  const cases: WireStat[] = [
    full,
    { ...full, modTime: '-1', size: '0', uid: 0, gid: 0, linkname: '', devmajor: '0', devminor: '0', xattrs: {} },
    { ...full, path: '', mode: 0, modTime: '0', size: String(2n ** 62n) },
    { ...full, path: 'x'.repeat(300), modTime: '-9223372036854775808' },
  ];
  for (const stat of cases) {
    const back = decodePacket(statPacket(stat));
    assert.equal(back.type, PACKET_STAT);
    assert.deepEqual({ ...back.stat!, xattrs: { ...back.stat!.xattrs } }, stat);
  }
});

test('the session\'s shared key is the same for a folder however it is named, and differs between folders', () => {
  assert.equal(contextSharedKey('/work/app'), contextSharedKey('/work/app/'));
  assert.equal(contextSharedKey('/work/app'), contextSharedKey('/work/other/../app'));
  assert.notEqual(contextSharedKey('/work/app'), contextSharedKey('/work/app2'));
  assert.match(contextSharedKey('.'), /^[0-9a-f]{64}$/);
});

/** A session server serving `dir` as the context on a unix socket, and an HTTP/2 client to it, as BuildKit dials it. */
async function servedContext(dir: string): Promise<{ client: http2.ClientHttp2Session; close(): void }> {
  const server = new SessionServer(() => {});
  const source = new ContextSource();
  source.add('context', dir);
  server.handle('/moby.filesync.v1.FileSync/DiffCopy', (call) => source.serve(call));
  const socketPath = path.join(dir, '..', `session-${randomBytes(4).toString('hex')}.sock`);
  const listener = net.createServer((socket) => server.serve(socket)).listen(socketPath);
  await once(listener, 'listening');
  const client = http2.connect('http://session', { createConnection: () => net.connect(socketPath) });
  client.on('error', () => {});
  return {
    client,
    close: () => {
      client.destroy();
      server.close();
      listener.close();
    },
  };
}

const diffCopy = methodCodec<Partial<Packet>, Packet>('moby.filesync.v1.FileSync', 'DiffCopy');

test('DiffCopy as fsutil\'s receiver drives it: every stat, then every file asked for at once arrives whole, then FIN', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'slipway-diffcopy-'));
  const dir = path.join(root, 'ctx');
  const served = await servedContext(dir).catch(async (err: unknown) => {
    await rm(root, { recursive: true, force: true });
    throw err;
  });
  try {
    // Sizes around the packet size (32 KiB), the whole-read limit (256 KiB) and the read size (1 MiB).
    const contents = new Map<string, Buffer>();
    for (const [name, size] of [['empty', 0], ['small', 300], ['packet', 32 * 1024], ['packet-plus-one', 32 * 1024 + 1], ['read-whole', 200 * 1024 + 3], ['mib-plus-one', 1024 * 1024 + 1], ['mib', 1024 * 1024], ['large', 5 * 1024 * 1024 + 17]] as const) {
      contents.set(`files/${name}`, randomBytes(size));
    }
    for (let i = 0; i < 300; i++) contents.set(`many/${String(i).padStart(3, '0')}`, randomBytes(i * 13));
    await mkdir(path.join(dir, 'files'), { recursive: true });
    await mkdir(path.join(dir, 'many'));
    for (const [rel, data] of contents) await writeFile(path.join(dir, rel), data);
    await writeFile(path.join(dir, 'skip.tmp'), 'ignored');

    const call = new GrpcClientCall(served.client, diffCopy, { 'dir-name': 'context', 'exclude-patterns': '*.tmp' });
    const messages = call.messages()[Symbol.asyncIterator]();
    const listed: string[] = [];
    for (;;) {
      const { value, done } = await messages.next();
      assert.ok(!done, 'the stats ended before the empty stat');
      assert.equal(value.type, PACKET_STAT);
      if (!value.stat) break;
      listed.push(value.stat.path);
    }
    assert.ok(!listed.includes('skip.tmp'), 'excluded paths are not listed');
    const fileIds = new Map<number, string>();
    listed.forEach((p, i) => {
      if (contents.has(p)) fileIds.set(i, p);
    });
    assert.equal(fileIds.size, contents.size, 'every file is listed');
    for (const id of fileIds.keys()) await call.write({ type: PACKET_REQ, ID: id });
    const received = new Map<number, Buffer[]>();
    let finished = 0;
    while (finished < fileIds.size) {
      const { value, done } = await messages.next();
      assert.ok(!done, `the call ended with ${fileIds.size - finished} files unfinished`);
      assert.equal(value.type, PACKET_DATA);
      assert.ok(fileIds.has(value.ID), `data for an id never asked for: ${value.ID}`);
      const parts = received.get(value.ID) ?? [];
      assert.ok(!parts.includes(Buffer.alloc(0)), 'no data after a file\'s end');
      if (value.data.length === 0) finished++;
      // fsutil's own packet size: larger ones were let in by dockerd only a round trip at a time.
      else assert.ok(value.data.length <= 32 * 1024, `a DATA packet carries at most 32 KiB; got ${value.data.length}`);
      parts.push(value.data);
      received.set(value.ID, parts);
    }
    for (const [id, rel] of fileIds) assert.deepEqual(Buffer.concat(received.get(id)!), contents.get(rel), `${rel} arrives byte-exact`);
    await call.write({ type: PACKET_FIN });
    call.end();
    const last = await messages.next();
    assert.equal(last.value?.type, PACKET_FIN, 'the sender answers FIN with FIN');
    await call.done;
  } finally {
    served.close();
    await rm(root, { recursive: true, force: true });
  }
});

test('a file that vanished after it was listed ends DiffCopy with an error status, not a hang', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'slipway-diffcopy-'));
  const dir = path.join(root, 'ctx');
  await mkdir(dir);
  await writeFile(path.join(dir, 'a'), 'a');
  await writeFile(path.join(dir, 'b'), 'b');
  const served = await servedContext(dir);
  try {
    const call = new GrpcClientCall(served.client, diffCopy, { 'dir-name': 'context' });
    const messages = call.messages()[Symbol.asyncIterator]();
    const listed: string[] = [];
    for (;;) {
      const { value } = await messages.next();
      if (!value?.stat) break;
      listed.push(value.stat.path);
    }
    await rm(path.join(dir, 'b'));
    await call.write({ type: PACKET_REQ, ID: listed.indexOf('b') });
    await assert.rejects(
      (async () => {
        for (;;) if ((await messages.next()).done) break;
      })(),
      (err: unknown) => err instanceof GrpcStatusError && /ENOENT/.test(err.message),
    );
  } finally {
    served.close();
    await rm(root, { recursive: true, force: true });
  }
});

test('a fast sender waits while the receiver reads nothing (flow control and the unsent bound), then everything arrives in order', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'slipway-diffcopy-'));
  const server = new SessionServer(() => {});
  const total = 200;
  const payload = randomBytes(256 * 1024);
  let resolved = 0;
  let sent!: () => void;
  const allSent = new Promise<void>((resolve) => (sent = resolve));
  server.handle('/test.Bulk/Send', async (call) => {
    for (let i = 0; i < total; i++) {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(i);
      await call.sendParts([head, payload]);
      resolved++;
    }
    sent();
  });
  const socketPath = path.join(root, 'bulk.sock');
  const listener = net.createServer((socket) => server.serve(socket)).listen(socketPath);
  await once(listener, 'listening');
  const client = http2.connect('http://session', { createConnection: () => net.connect(socketPath) });
  client.on('error', () => {});
  try {
    const stream = client.request({ ':method': 'POST', ':path': '/test.Bulk/Send', 'content-type': 'application/grpc' });
    stream.end();
    stream.pause();
    // 50 MB cannot fit in HTTP/2's windows and the bound: the sender must be held back.
    await once(stream, 'response');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(resolved < total, `all ${total} sends completed while nothing was read`);
    const seen: number[] = [];
    let buffered = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
        const length = buffered.readUInt32BE(1);
        const message = buffered.subarray(5, 5 + length);
        assert.equal(length, 4 + payload.length);
        assert.deepEqual(message.subarray(4), payload);
        seen.push(message.readUInt32BE(0));
        buffered = buffered.subarray(5 + length);
      }
    });
    stream.resume();
    await allSent;
    await once(stream, 'end');
    assert.deepEqual(seen, Array.from({ length: total }, (_, i) => i));
  } finally {
    client.destroy();
    server.close();
    listener.close();
    await rm(root, { recursive: true, force: true });
  }
});
