// The CLI on a corporate network: behind a proxy that demands Basic authentication (a real
// squid), behind a proxy that inspects TLS with its own CA and speaks only HTTP/1.1 (one run
// here), and behind one that drops idle tunnels. The real `slipway` program is used wherever
// what is under test is what a user sees: its exit code, its words, the file it leaves behind.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { createLogger } from '@slipway/proto';
import { TunnelClient, type CliError } from '@slipway/cli';
import {
  SLIPWAY_BIN,
  connectUnix,
  echoRoundTrip,
  makeInspectionCa,
  runCommand,
  squidAvailable,
  startConnectProxy,
  startEchoServer,
  startSlipwayProxy,
  startSquid,
  startStack,
  tempDir,
  type ConnectProxy,
  type EchoServer,
  type InspectionCa,
  type SlipwayStack,
  type Squid,
  type TempDir,
} from '@slipway/e2e';

let stack: SlipwayStack;
let echo: EchoServer;
let scratch: TempDir;

before(async () => {
  echo = await startEchoServer();
  stack = await startStack();
  await stack.startAgent({ agentId: 'corp-amd64', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
  scratch = await tempDir('corp');
});

after(async () => {
  await stack?.close();
  await echo?.close();
  await scratch?.remove();
});

/** Runs `slipway dial-stdio`, writing `input` and closing stdin; what it echoed, how it exited, what it said. */
async function dialStdio(env: Record<string, string>, input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const result = await runCommand(process.execPath, [SLIPWAY_BIN, 'dial-stdio', '--platform', 'linux/amd64'], {
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      SLIPWAY_GATEWAY: stack.gatewayUrl,
      SLIPWAY_TOKEN: await stack.clientToken('demo'),
      XDG_CONFIG_HOME: path.join(scratch.path, 'xdg-dial'),
      ...env,
    },
    input,
    allowFailure: true,
    timeoutMs: 60_000,
  });
  return { code: result.code, stdout: result.stdout, stderr: result.stderr };
}

function metric(name: string, labels: string): number {
  const text = stack.gateway.metrics.registry.render();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('a proxy demanding Basic authentication (squid)', { skip: squidAvailable() ? false : 'squid is not installed (scripts/install-deps.sh)' }, () => {
  let squid: Squid;
  before(async () => {
    squid = await startSquid({ users: { builder: 'p@ss:word' } });
  });
  after(async () => {
    await squid?.stop();
  });

  test('slipway dial-stdio carries bytes intact over HTTP/2 with the credentials from HTTPS_PROXY', async () => {
    const h2Before = metric('slipway_tunnel_streams_opened_total', 'transport="h2"');
    const result = await dialStdio({ SLIPWAY_CA_CERT: stack.caPath, HTTPS_PROXY: squid.url('builder', 'p@ss:word') }, 'through squid, authenticated');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'through squid, authenticated');
    assert.ok(metric('slipway_tunnel_streams_opened_total', 'transport="h2"') > h2Before, 'the stream came over HTTP/2');
    assert.match(await squid.accessLog(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${stack.port}`));
  });

  test('wrong credentials: exit 6 (PROXY_AUTH), the proxy is named and the gateway is not blamed', async () => {
    const result = await dialStdio({ SLIPWAY_CA_CERT: stack.caPath, HTTPS_PROXY: squid.url('builder', 'not-it') }, 'x');
    assert.equal(result.code, 6, result.stderr);
    assert.match(result.stderr, new RegExp(`proxy 127\\.0\\.0\\.1:${squid.port} rejected the credentials`));
    assert.doesNotMatch(result.stderr, /gateway/i);
    assert.doesNotMatch(result.stderr, /not-it/, 'the password is never printed');
  });
});

describe('a TLS-inspecting proxy that speaks only HTTP/1.1', () => {
  let ca: InspectionCa;
  let proxy: ConnectProxy;
  before(async () => {
    ca = await makeInspectionCa();
    proxy = await startConnectProxy({ inspect: { ca, upstreamCa: stack.pki.caCertPem } });
  });
  after(async () => {
    await proxy?.close();
    await ca?.remove();
  });

  test("without its CA the error names the certificate's issuer as untrusted (exit 8)", async () => {
    const result = await dialStdio({ SLIPWAY_CA_CERT: stack.caPath, HTTPS_PROXY: proxy.url }, 'x');
    assert.equal(result.code, 8, result.stderr);
    assert.match(result.stderr, /issued by 'Slipway Test Inspecting Proxy CA' \(Slipway tests\), which is not trusted/);
    assert.match(result.stderr, /SLIPWAY_CA_CERT/, 'and says what to do');
  });

  test('given its CA, the CLI falls back to WebSocket on its own, bytes arrive intact, and the next process skips the probe', async () => {
    const xdg = path.join(scratch.path, 'xdg-inspected');
    const env = { HTTPS_PROXY: proxy.url, SLIPWAY_CA_CERT: ca.certPath, XDG_CONFIG_HOME: xdg };
    const wsBefore = metric('slipway_tunnel_streams_opened_total', 'transport="websocket"');

    const first = await startSlipwayProxy({ gatewayUrl: stack.gatewayUrl, token: await stack.clientToken('demo'), caPath: ca.certPath, platform: 'linux/amd64', socketPath: path.join(scratch.path, 'inspected-1.sock'), env });
    try {
      const socket = await connectUnix(path.join(scratch.path, 'inspected-1.sock'));
      const result = await echoRoundTrip(socket, 4 * 1024 * 1024);
      assert.equal(result.received, result.sent);
    } finally {
      await first.stop();
    }
    assert.ok(metric('slipway_tunnel_streams_opened_total', 'transport="websocket"') > wsBefore, 'the stream came over WebSocket');
    assert.ok(proxy.offeredAlpn.some((offer) => offer.includes('h2')), 'the first process probed for HTTP/2');
    const memory = JSON.parse(fs.readFileSync(path.join(xdg, 'slipway', 'transports.json'), 'utf8')) as { networks: Record<string, { transport: string; negotiated: string }> };
    assert.deepEqual(Object.keys(memory.networks), [`proxy 127.0.0.1:${proxy.port} -> 127.0.0.1:${stack.port}`]);
    assert.equal(Object.values(memory.networks)[0]?.negotiated, 'http/1.1');

    const offersBefore = proxy.offeredAlpn.length;
    const second = await startSlipwayProxy({ gatewayUrl: stack.gatewayUrl, token: await stack.clientToken('demo'), caPath: ca.certPath, platform: 'linux/amd64', socketPath: path.join(scratch.path, 'inspected-2.sock'), env });
    try {
      const socket = await connectUnix(path.join(scratch.path, 'inspected-2.sock'));
      const result = await echoRoundTrip(socket, 1024 * 1024);
      assert.equal(result.received, result.sent);
      await second.waitForOutput(/using WebSocket without probing/, 10_000);
    } finally {
      await second.stop();
    }
    const later = proxy.offeredAlpn.slice(offersBefore);
    assert.ok(later.length > 0, 'the second process went through the proxy');
    assert.deepEqual(later.filter((offer) => offer.includes('h2')), [], 'and never offered HTTP/2');
  });

  test('NODE_EXTRA_CA_CERTS holding its CA is enough too', async () => {
    const result = await dialStdio({ NODE_EXTRA_CA_CERTS: ca.certPath, HTTPS_PROXY: proxy.url }, 'trusted through the machine-wide extra CAs');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'trusted through the machine-wide extra CAs');
  });
});

describe('a proxy that drops idle tunnels', () => {
  let proxy: ConnectProxy;
  const idleTimeoutMs = 2_500;
  before(async () => {
    proxy = await startConnectProxy({ idleTimeoutMs });
  });
  after(async () => {
    await proxy?.close();
  });

  async function client(transport: 'h2' | 'websocket', keepaliveMs: number): Promise<TunnelClient> {
    return new TunnelClient({
      gatewayUrl: new URL(stack.gatewayUrl),
      token: await stack.clientToken('demo'),
      project: undefined,
      ca: fs.readFileSync(stack.caPath),
      transport,
      env: { HTTPS_PROXY: proxy.url },
      connectTimeoutMs: 5_000,
      log: createLogger('test-cli', process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent'),
      keepaliveMs,
    });
  }

  // One tunnel, an echo, a silence longer than the proxy's idle timeout, another echo.
  async function quietBuild(c: TunnelClient): Promise<{ first: string; second: string | CliError }> {
    const tunnel = await c.open('linux/amd64');
    const received: Buffer[] = [];
    tunnel.readable.on('data', (chunk: Buffer) => received.push(chunk));
    let failure: CliError | undefined;
    tunnel.once('remote-end', (error) => {
      failure = error;
    });
    tunnel.writable.write('before the silence;');
    while (Buffer.concat(received).length < 'before the silence;'.length && failure === undefined) await new Promise((r) => setTimeout(r, 20));
    const first = Buffer.concat(received).toString();
    received.length = 0;
    await new Promise((r) => setTimeout(r, idleTimeoutMs * 2.5));
    if (failure) return { first, second: failure };
    tunnel.writable.end('after the silence');
    const [error] = (await once(tunnel, 'remote-end').catch(() => [failure])) as [CliError | undefined];
    if (error ?? failure) return { first, second: (error ?? failure)! };
    return { first, second: Buffer.concat(received).toString() };
  }

  for (const transport of ['h2', 'websocket'] as const) {
    test(`keepalives hold a quiet ${transport} tunnel open past the proxy's idle timeout`, async () => {
      const c = await client(transport, 400);
      try {
        const dropped = proxy.idleClosed;
        const result = await quietBuild(c);
        assert.equal(result.first, 'before the silence;');
        assert.equal(result.second, 'after the silence');
        assert.equal(proxy.idleClosed, dropped, 'the proxy dropped nothing');
      } finally {
        await c.close();
      }
    });
  }

  test('without keepalives the same quiet WebSocket tunnel is cut by the proxy (the timeout is real)', async () => {
    const c = await client('websocket', 0);
    try {
      const dropped = proxy.idleClosed;
      const result = await quietBuild(c);
      assert.equal(result.first, 'before the silence;');
      assert.notEqual(result.second, 'after the silence');
      assert.ok(proxy.idleClosed > dropped, 'the proxy dropped the idle tunnel');
    } finally {
      await c.close();
    }
  });
});
