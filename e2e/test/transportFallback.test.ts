// `--transport auto`: where TLS on the path only negotiates HTTP/1.1 (a TLS-terminating proxy
// that does not speak HTTP/2), the CLI falls back to WebSocket on its own, and bytes still
// arrive intact; where h2 is offered, it uses HTTP/2.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { pipeline } from 'node:stream';
import { once } from 'node:events';
import { startStack, startEchoServer, tunnelClientFor, type SlipwayStack, type EchoServer } from '@slipway/e2e';

let stack: SlipwayStack;
let echo: EchoServer;
let relay: tls.Server;
let relayPort: number;

before(async () => {
  echo = await startEchoServer();
  stack = await startStack();
  await stack.startAgent({ agentId: 'fallback', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
  // Terminates TLS offering only http/1.1, and re-originates it to the gateway the same way.
  relay = tls.createServer({ key: stack.pki.serverKeyPem, cert: stack.pki.serverCertPem, ALPNProtocols: ['http/1.1'] }, (inbound) => {
    const outbound = tls.connect({ host: '127.0.0.1', port: stack.port, ca: stack.pki.caCertPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    pipeline(inbound, outbound, inbound, () => {
      inbound.destroy();
      outbound.destroy();
    });
  });
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  relayPort = (relay.address() as { port: number }).port;
});

after(async () => {
  relay?.close();
  await stack?.close();
  await echo?.close();
});

async function roundTrip(gatewayUrl: string): Promise<{ transport: string | undefined; echoed: string }> {
  const client = await tunnelClientFor({ ...stack, gatewayUrl }, { transport: 'auto' });
  const tunnel = await client.open('linux/amd64');
  const chunks: Buffer[] = [];
  tunnel.readable.on('data', (c: Buffer) => chunks.push(c));
  const ended = once(tunnel, 'remote-end');
  tunnel.writable.end('through whatever the path allows');
  const [error] = await ended;
  assert.equal(error, undefined);
  const transport = client.transport;
  await client.close();
  return { transport, echoed: Buffer.concat(chunks).toString() };
}

test('auto picks HTTP/2 when the path offers it', async () => {
  const result = await roundTrip(stack.gatewayUrl);
  assert.equal(result.transport, 'h2');
  assert.equal(result.echoed, 'through whatever the path allows');
});

test('auto falls back to WebSocket behind an HTTP/1.1-only TLS relay', async () => {
  const result = await roundTrip(`https://127.0.0.1:${relayPort}`);
  assert.equal(result.transport, 'websocket');
  assert.equal(result.echoed, 'through whatever the path allows');
});
