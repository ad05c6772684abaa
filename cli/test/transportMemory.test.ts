import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TRANSPORT_MEMORY_TTL_MS, TransportMemory } from '../src/transportMemory.js';
import { networkKeyOf } from '../src/gatewayConnection.js';

async function withDir(run: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'slipway-memory-'));
  try {
    await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a network where HTTP/2 did not get through is recalled, for a day, by a later process', () =>
  withDir((dir) => {
    let now = 1_000_000;
    const file = path.join(dir, 'slipway', 'transports.json');
    const key = TransportMemory.key('proxy.corp:3128', 'gw.example.com', 443);
    new TransportMemory(file, () => now).rememberWebSocket(key, 'http/1.1');
    assert.equal((fs.statSync(file).mode & 0o777).toString(8), '600');
    const later = new TransportMemory(file, () => now);
    assert.deepEqual(later.recall(key), { transport: 'websocket', learnedAtMs: 1_000_000, negotiated: 'http/1.1' });
    assert.equal(later.recall(TransportMemory.key(undefined, 'gw.example.com', 443)), undefined, 'direct is another network');
    assert.equal(later.recall(TransportMemory.key('proxy.corp:3128', 'gw.example.com', 8443)), undefined, 'another gateway port');
    now += TRANSPORT_MEMORY_TTL_MS + 1;
    assert.equal(later.recall(key), undefined, 'expired: probe again');
  }));

test('forget drops what was learned once HTTP/2 gets through', () =>
  withDir((dir) => {
    const file = path.join(dir, 'transports.json');
    const memory = new TransportMemory(file);
    const a = TransportMemory.key('a:1', 'gw', 443);
    const b = TransportMemory.key('b:1', 'gw', 443);
    memory.rememberWebSocket(a, 'http/1.1');
    memory.rememberWebSocket(b, 'no protocol');
    memory.forget(a);
    assert.equal(memory.recall(a), undefined);
    assert.equal(memory.recall(b)?.negotiated, 'no protocol');
  }));

test('a damaged or foreign file counts as nothing learned and is replaced on the next write', () =>
  withDir((dir) => {
    const file = path.join(dir, 'transports.json');
    const key = TransportMemory.key(undefined, 'gw', 443);
    for (const text of ['not json', '[]', '{"networks": {"x": {"transport": "h3"}}}', 'null']) {
      fs.writeFileSync(file, text);
      assert.equal(new TransportMemory(file).recall(key), undefined, text);
    }
    new TransportMemory(file).rememberWebSocket(key, 'http/1.1');
    assert.equal(new TransportMemory(file).recall(key)?.transport, 'websocket');
  }));

test('without a home directory nothing is remembered and nothing fails', () => {
  const memory = new TransportMemory(undefined);
  memory.rememberWebSocket('k', 'http/1.1');
  assert.equal(memory.recall('k'), undefined);
});

test('the network key names the proxy (never its credentials) or direct, and the gateway', () => {
  const gateway = new URL('https://gw.example.com:8443');
  assert.equal(networkKeyOf(gateway, {}), 'direct -> gw.example.com:8443');
  assert.equal(networkKeyOf(gateway, { HTTPS_PROXY: 'http://user:secret@proxy.corp:3128' }), 'proxy proxy.corp:3128 -> gw.example.com:8443');
  assert.equal(networkKeyOf(gateway, { HTTPS_PROXY: 'http://proxy.corp:3128', NO_PROXY: '.example.com' }), 'direct -> gw.example.com:8443');
  assert.equal(networkKeyOf(new URL('https://gw.example.com'), {}), 'direct -> gw.example.com:443');
  assert.equal(networkKeyOf(gateway, { HTTPS_PROXY: 'socks5://proxy:1080' }), undefined);
});
