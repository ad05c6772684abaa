// A CLI behind a corporate HTTP proxy: tunnels go through CONNECT on a real squid that demands
// Basic authentication, and a proxy failure is reported as the proxy's, not the gateway's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import type { CliError } from '@slipway/cli';
import { startStack, startEchoServer, startSquid, tunnelClientFor, echoRoundTrip, type SlipwayStack, type EchoServer, type Squid } from '@slipway/e2e';

let stack: SlipwayStack;
let echo: EchoServer;
let squid: Squid;

before(async () => {
  echo = await startEchoServer();
  stack = await startStack();
  await stack.startAgent({ agentId: 'behind-proxy', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
  squid = await startSquid({ users: { builder: 's3cret pass' }, connectPorts: '1024-65535' });
});

after(async () => {
  await squid?.stop();
  await stack?.close();
  await echo?.close();
});

// A local socket pair end that the tunnel's bytes can be checked through.
async function roundTripThrough(env: Record<string, string>, transport: 'h2' | 'websocket'): Promise<void> {
  const client = await tunnelClientFor(stack, { transport, env });
  const tunnel = await client.open('linux/amd64');
  const server = net.createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const socket = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const [local] = await accepted;
  // local <-> tunnel by hand, so the test sees exactly what crossed.
  local.on('data', (c: Buffer) => tunnel.writable.write(c));
  local.on('end', () => tunnel.writable.end());
  tunnel.readable.on('data', (c: Buffer) => local.write(c));
  tunnel.once('remote-end', () => local.end());
  const result = await echoRoundTrip(socket, 8 * 1024 * 1024);
  assert.equal(result.received, result.sent);
  server.close();
  await client.close();
}

for (const transport of ['h2', 'websocket'] as const) {
  test(`a tunnel over ${transport} through squid with Basic auth carries bytes intact`, async () => {
    const before = await squid.accessLog();
    await roundTripThrough({ HTTPS_PROXY: squid.url('builder', 's3cret pass') }, transport);
    const log = (await squid.accessLog()).slice(before.length);
    assert.match(log, new RegExp(`CONNECT 127\\.0\\.0\\.1:${stack.port}`), 'the tunnel went through the proxy');
  });
}

test('wrong proxy credentials: the error names the proxy, not the gateway', async () => {
  const client = await tunnelClientFor(stack, { transport: 'h2', env: { HTTPS_PROXY: squid.url('builder', 'wrong') } });
  await assert.rejects(client.open('linux/amd64'), (err: CliError) => {
    assert.equal(err.code, 'PROXY_AUTH');
    assert.match(err.message, new RegExp(`${squid.host}:${squid.port}`));
    assert.doesNotMatch(err.message, /wrong/, 'no credentials in the message');
    return true;
  });
  await client.close();
});

test('NO_PROXY covering the gateway bypasses the proxy', async () => {
  const before = await squid.accessLog();
  await roundTripThrough({ HTTPS_PROXY: squid.url('builder', 'wrong'), NO_PROXY: '127.0.0.0/8' }, 'h2');
  assert.equal((await squid.accessLog()).slice(before.length), '', 'squid saw nothing');
});
