// Every bad request gets a clear error and no stream: nothing reaches the upstream.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import fs from 'node:fs';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { TUNNEL_PATH, AGENT_CONNECT_PATH } from '@slipway/proto';
import type { CliError } from '@slipway/cli';
import {
  startStack,
  startEchoServer,
  startAgentProcess,
  waitFor,
  tunnelClientFor,
  acquireBuild,
  gatewayApi,
  type SlipwayStack,
  type EchoServer,
} from '@slipway/e2e';

let stack: SlipwayStack;
let echo: EchoServer;
let ca: Buffer;

before(async () => {
  echo = await startEchoServer();
  stack = await startStack();
  ca = fs.readFileSync(stack.caPath);
  await stack.startAgent({ agentId: 'only-amd64', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
});

after(async () => {
  await stack.close();
  await echo.close();
});

interface Answer {
  status: number;
  code: string | undefined;
  message: string;
}

async function h2Tunnel(headers: http2.OutgoingHttpHeaders): Promise<Answer> {
  const session = http2.connect(stack.gatewayUrl, { ca });
  session.on('error', () => {});
  try {
    const req = session.request({ ':method': 'POST', ':path': TUNNEL_PATH, ...headers });
    req.end();
    const [response] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
    let body = '';
    req.setEncoding('utf8');
    for await (const chunk of req) body += chunk;
    const parsed = body ? (JSON.parse(body) as { error: { code: string; message: string } }) : undefined;
    return { status: Number(response[':status']), code: response['slipway-error'] as string | undefined, message: parsed?.error.message ?? '' };
  } finally {
    session.close();
  }
}

// Tunnels carry build tokens: one build per project, acquired once.
const buildTokens = new Map<string, Promise<string>>();
async function bearer(project = 'demo'): Promise<string> {
  let token = buildTokens.get(project);
  if (!token) {
    token = acquireBuild(stack, { project }).then((b) => b.token);
    buildTokens.set(project, token);
  }
  return `Bearer ${await token}`;
}

describe('HTTP/2 tunnel requests that must be refused', () => {
  const cases: Array<[string, () => Promise<http2.OutgoingHttpHeaders>, number, string, RegExp]> = [
    ['missing token', async () => ({ 'slipway-platform': 'linux/amd64' }), 401, 'UNAUTHENTICATED', /authorization/i],
    [
      'expired token',
      async () => ({
        authorization: `Bearer ${await stack.issuer.issueClientToken({ project: 'demo', subject: 't', scopes: ['build'], ttlSec: 60, issuedAt: new Date(Date.now() - 3_600_000) })}`,
        'slipway-platform': 'linux/amd64',
      }),
      401,
      'UNAUTHENTICATED',
      /expired/i,
    ],
    [
      'wrong audience (an agent join token)',
      async () => ({ authorization: `Bearer ${await stack.agentToken('sneaky')}`, 'slipway-platform': 'linux/amd64' }),
      401,
      'UNAUTHENTICATED',
      /audience/i,
    ],
    ['garbage token', async () => ({ authorization: 'Bearer not.a.jwt', 'slipway-platform': 'linux/amd64' }), 401, 'UNAUTHENTICATED', /malformed|token/i],
    [
      'token without the build scope',
      async () => ({ authorization: `Bearer ${await stack.clientToken('demo', { scopes: ['read'] })}`, 'slipway-platform': 'linux/amd64' }),
      403,
      'FORBIDDEN',
      /scope/i,
    ],
    [
      'token for another project',
      async () => ({ authorization: await bearer('demo'), 'slipway-platform': 'linux/amd64', 'slipway-project': 'other' }),
      403,
      'FORBIDDEN',
      /project/i,
    ],
    ['missing platform', async () => ({ authorization: await bearer() }), 400, 'BAD_REQUEST', /slipway-platform/],
    ['unknown platform', async () => ({ authorization: await bearer(), 'slipway-platform': 'linux/s390x' }), 400, 'UNKNOWN_PLATFORM', /s390x/],
    [
      'a platform the build acquired no builder for',
      async () => ({ authorization: await bearer(), 'slipway-platform': 'linux/arm64' }),
      503,
      'NO_CAPACITY',
      /no builder for linux\/arm64: acquire one first/,
    ],
    [
      'a project token instead of a build token',
      async () => ({ authorization: `Bearer ${await stack.clientToken('demo')}`, 'slipway-platform': 'linux/amd64' }),
      403,
      'FORBIDDEN',
      /build token/,
    ],
    [
      'a malformed session attachment',
      async () => ({ authorization: await bearer(), 'slipway-platform': 'linux/amd64', 'slipway-session': JSON.stringify({ id: 'a b', name: 'n', sharedKey: 'k', methods: ['/a.B/C'] }) }),
      400,
      'BAD_REQUEST',
      /slipway-session: session id must be 1-128 of/,
    ],
    [
      'a session attachment whose name is not printable ASCII',
      async () => ({ authorization: await bearer(), 'slipway-platform': 'linux/amd64', 'slipway-session': JSON.stringify({ id: 'a', name: 'caf\u00e9', sharedKey: 'k', methods: ['/a.B/C'] }) }),
      400,
      'BAD_REQUEST',
      /session name must be at most 256 printable ASCII/,
    ],
    [
      // The agent here forwards to a buildkitd-kind upstream, which has no /session.
      'a session attachment to a builder without /session',
      async () => ({ authorization: await bearer(), 'slipway-platform': 'linux/amd64', 'slipway-session': JSON.stringify({ id: 'a', name: 'n', sharedKey: 'k', methods: ['/a.B/C'] }) }),
      501,
      'UNSUPPORTED',
      /buildkitd .* has no \/session endpoint/,
    ],
    [
      'oversized request headers',
      async () => ({ authorization: await bearer(), 'slipway-platform': 'linux/amd64', 'x-padding': 'p'.repeat(12_000), 'x-more': 'q'.repeat(6_000) }),
      431,
      'HEADERS_TOO_LARGE',
      /exceed/,
    ],
  ];
  for (const [name, headers, status, code, message] of cases) {
    test(name, async () => {
      const before = echo.connections;
      const answer = await h2Tunnel(await headers());
      assert.equal(answer.status, status);
      assert.equal(answer.code, code);
      assert.match(answer.message, message);
      assert.equal(echo.connections, before, 'no stream reached the upstream');
    });
  }

  test('GET instead of POST', async () => {
    const session = http2.connect(stack.gatewayUrl, { ca });
    const req = session.request({ ':method': 'GET', ':path': TUNNEL_PATH, authorization: await bearer(), 'slipway-platform': 'linux/amd64' });
    req.end();
    const [response] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
    req.resume();
    assert.equal(response[':status'], 400);
    assert.equal(response['slipway-error'], 'BAD_REQUEST');
    session.close();
  });
});

function wsRefusal(headers: Record<string, string>, urlPath = TUNNEL_PATH): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${stack.port}${urlPath}`, { ca, headers });
    ws.on('open', () => reject(new Error('WebSocket opened; expected a refusal')));
    ws.on('error', () => {});
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        let message = '';
        try {
          message = (JSON.parse(body) as { error: { message: string } }).error.message;
        } catch {
          message = body;
        }
        resolve({ status: res.statusCode ?? 0, code: res.headers['slipway-error'] as string | undefined, message });
      });
    });
  });
}

describe('WebSocket tunnel requests that must be refused', () => {
  test('missing token', async () => {
    const answer = await wsRefusal({ 'slipway-platform': 'linux/amd64' });
    assert.equal(answer.status, 401);
    assert.equal(answer.code, 'UNAUTHENTICATED');
  });
  test('a platform the build has no builder for', async () => {
    const answer = await wsRefusal({ authorization: await bearer(), 'slipway-platform': 'linux/arm64' });
    assert.equal(answer.status, 503);
    assert.equal(answer.code, 'NO_CAPACITY');
  });
  test('unknown upgrade path', async () => {
    const answer = await wsRefusal({ authorization: await bearer() }, '/v1/nope');
    assert.equal(answer.status, 400);
    assert.match(answer.message, /cannot upgrade/);
  });
  test('oversized headers over HTTP/1.1 get 431', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: stack.port, path: TUNNEL_PATH, ca, servername: 'localhost', headers: { 'x-padding': 'p'.repeat(40_000) } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 431);
  });
});

describe('agent connections that must be refused', () => {
  async function agentUpgrade(headers: string): Promise<string> {
    const socket = tls.connect({ host: '127.0.0.1', port: stack.port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
    socket.write(`GET ${AGENT_CONNECT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: slipway-agent/1\r\n${headers}\r\n`);
    let text = '';
    socket.setEncoding('utf8');
    for await (const chunk of socket) text += chunk;
    return text;
  }
  test('a client token cannot register an agent', async () => {
    const answer = await agentUpgrade(`Authorization: ${await bearer()}\r\nslipway-agent-platform: linux/amd64\r\n`);
    assert.match(answer, /^HTTP\/1\.1 401 /);
    assert.match(answer, /UNAUTHENTICATED/);
  });
  test('an agent naming another id than its token', async () => {
    const answer = await agentUpgrade(`Authorization: Bearer ${await stack.agentToken('a1')}\r\nslipway-agent-id: a2\r\nslipway-agent-platform: linux/amd64\r\n`);
    assert.match(answer, /^HTTP\/1\.1 403 /);
  });
  test('an unknown platform', async () => {
    const answer = await agentUpgrade(`Authorization: Bearer ${await stack.agentToken('a1')}\r\nslipway-agent-platform: windows/amd64\r\n`);
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /UNKNOWN_PLATFORM/);
  });
});

describe('the CLI maps refusals to its own error codes', () => {
  test('NO_AGENT for a platform nobody serves, when the build acquires its builder', async () => {
    const client = await tunnelClientFor(stack, { transport: 'h2' });
    await assert.rejects(client.open('linux/arm64'), (err: CliError) => err.code === 'NO_AGENT' && /linux\/arm64/.test(err.message));
    await client.close();
  });
  test('the lifecycle API answers NO_AGENT for a platform nobody serves', async () => {
    const created = await gatewayApi<{ buildId: string; token: string }>(stack, 'POST', '/v1/builds', await stack.clientToken('demo'), { platforms: ['linux/arm64'] });
    assert.equal(created.status, 201);
    const answer = await gatewayApi<{ error: { code: string; message: string } }>(stack, 'POST', `/v1/builds/${created.body.buildId}/acquire`, created.body.token, {
      platform: 'linux/arm64',
    });
    assert.equal(answer.status, 503);
    assert.equal(answer.body.error.code, 'NO_AGENT');
    assert.match(answer.body.error.message, /no linux\/arm64 builder is connected/);
  });
  test('TLS_FAILED naming the issuer when the CA is not trusted', async () => {
    const client = await tunnelClientFor(stack, { transport: 'auto', ca: Buffer.from(stack.pki.unrelatedCa.certPem) });
    await assert.rejects(client.open('linux/amd64'), (err: CliError) => err.code === 'TLS_FAILED' && /issued by/.test(err.message));
    await client.close();
  });
});

describe('an agent that is killed', () => {
  for (const path of ['lane', 'link'] as const) {
  test(`its streams end promptly with AGENT_LOST at the client, not a hang (stream on a ${path})`, async () => {
    const agentId = `doomed-${path}`;
    const agent = await startAgentProcess(stack, {
      agentId,
      platform: 'linux/arm64',
      upstream: `buildkitd:${echo.address}`,
      env: { SLIPWAY_LANES: path === 'lane' ? '2' : '0' },
    });
    try {
      if (path === 'lane') await waitFor(() => (stack.gateway.pool.get(agentId)?.lanes.idleCount ?? 0) > 0, 10_000, 'an idle lane');
      const onPath = stack.gateway.metrics.streamsByPath.values.get(`{path="${path}"}`) ?? 0;
      const client = await tunnelClientFor(stack, { transport: 'h2' });
      const tunnel = await client.open('linux/arm64');
      tunnel.readable.resume();
      await once(tunnel, 'open');
      // Keep bytes moving so the stream is busy when its agent dies.
      const block = Buffer.alloc(64 * 1024, 1);
      const timer = setInterval(() => tunnel.writable.write(block), 5);
      const ended = once(tunnel, 'remote-end') as Promise<[CliError | undefined]>;
      await new Promise((r) => setTimeout(r, 200));
      agent.kill();
      const [error] = await ended;
      clearInterval(timer);
      assert.ok(error, 'the stream ended with an error');
      assert.equal(error.code, 'AGENT_LOST');
      assert.match(error.message, new RegExp(agentId));
      assert.equal(stack.gateway.metrics.streamsByPath.values.get(`{path="${path}"}`), onPath + 1, `the stream rode a ${path}`);
      tunnel.cancel();
      await client.close();
    } finally {
      await agent.stop();
    }
  });
  }
});

describe('a gateway that goes away mid-stream', () => {
  test('the client sees the stream fail, never a clean end-of-stream', async () => {
    const s = await startStack();
    try {
      await s.startAgent({ agentId: 'bystander', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
      const client = await tunnelClientFor(s, { transport: 'h2' });
      const tunnel = await client.open('linux/amd64');
      tunnel.readable.resume();
      await once(tunnel, 'open');
      const ended = once(tunnel, 'remote-end') as Promise<[CliError | undefined]>;
      await s.gateway.close(0);
      const [error] = await ended;
      assert.ok(error, 'the stream ended with an error');
      assert.match(error.code, /TUNNEL_FAILED|AGENT_LOST/);
      await client.close();
    } finally {
      await s.close();
    }
  });
});
