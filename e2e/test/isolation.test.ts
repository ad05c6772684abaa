// Identity and isolation through two real gateway replicas sharing Redis:
// - a token of project alpha never reaches project beta's builder, on any path (HTTP/2 tunnel,
//   WebSocket tunnel, the lifecycle API, a replica-to-replica forward);
// - every path refuses bad tokens (alg none, HS256 signed with the public key, expired, not yet
//   valid, wrong issuer or audience, unknown kid, revoked, oversized, malformed) with a code and no stream;
// - rate limits hold under one token's burst while another token still builds;
// - the audit log records every decision and never a token.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import tls from 'node:tls';
import fs from 'node:fs';
import net from 'node:net';
import { createHmac, createPrivateKey, randomUUID, type JsonWebKey } from 'node:crypto';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { AGENT_CONNECT_PATH, REPLICA_FORWARD_PATH, TUNNEL_PATH } from '@slipway/proto';
import { makeTestPki, MemoryIdentityStore, RedisRoutingTable, TokenIssuer, generateSigningKey, type TestPki } from '@slipway/gateway';
import { startRedis, startStack, startEchoServer, acquireBuild, gatewayApi, type RedisServer, type SlipwayStack, type EchoServer } from '@slipway/e2e';

let redis: RedisServer;
let pki: TestPki;
let echo: EchoServer;
let canary: { server: net.Server; connections: number; port: number };
let one: SlipwayStack;
let two: SlipwayStack;
const auditLines: string[] = [];
const tokensSeen = new Set<string>();

async function canaryServer(): Promise<typeof canary> {
  const state = { connections: 0 };
  const server = net.createServer((s) => {
    state.connections++;
    s.on('error', () => {});
    s.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    get connections() {
      return state.connections;
    },
    port: (server.address() as net.AddressInfo).port,
  };
}

before(async () => {
  redis = await startRedis();
  pki = await makeTestPki();
  echo = await startEchoServer();
  canary = await canaryServer();
  const identityStore = new MemoryIdentityStore();
  const table = () => new RedisRoutingTable({ client: new Redis(redis.url, { maxRetriesPerRequest: 1 }), keyPrefix: `iso${process.pid}:` });
  one = await startStack({ table: table(), pki, gatewayId: 'gw-one', identity: true, identityStore, auditLines });
  two = await startStack({ table: table(), pki, gatewayId: 'gw-two', identity: true, identityStore, auditLines });
  // beta's builder links to replica two and is bound to beta first; alpha's links to replica one.
  await two.startAgent({ agentId: 'beta-builder', platform: 'linux/amd64', upstream: `buildkitd:tcp://127.0.0.1:${canary.port}`, maxBuilds: 4 });
  const beta = await acquireBuild(two, { project: 'beta' });
  assert.equal(beta.agentId, 'beta-builder');
  await one.startAgent({ agentId: 'alpha-builder', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}`, maxBuilds: 4 });
  betaBuild = beta;
  const connectionsBefore = canary.connections;
  assert.equal(connectionsBefore, 0);
});

let betaBuild: { buildId: string; token: string; agentId: string };

after(async () => {
  for (const s of [one, two]) await s.close().catch(() => {});
  for (const s of [one, two]) await s.table.close().catch(() => {});
  canary.server.close();
  await echo.close();
  await redis.stop();
  await pki.cleanup();
});

interface Answer {
  status: number;
  code: string | undefined;
  body: string;
}

/** Opens a tunnel over HTTP/2, sends `payload`, half-closes and reads everything back. */
async function h2Tunnel(stack: SlipwayStack, headers: http2.OutgoingHttpHeaders, payload = 'ping', path = TUNNEL_PATH): Promise<Answer> {
  const session = http2.connect(stack.gatewayUrl, { ca: fs.readFileSync(stack.caPath) });
  session.on('error', () => {});
  try {
    const req = session.request({ ':method': 'POST', ':path': path, 'slipway-platform': 'linux/amd64', ...headers });
    req.on('error', () => {});
    req.end(payload);
    const [response] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
    let body = '';
    req.setEncoding('utf8');
    for await (const chunk of req) body += chunk;
    return { status: Number(response[':status']), code: response['slipway-error'] as string | undefined, body };
  } finally {
    session.close();
  }
}

/** A WebSocket tunnel: the upgrade's refusal status, or 101 and the echoed bytes. */
async function wsTunnel(stack: SlipwayStack, token: string): Promise<Answer> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`wss://127.0.0.1:${stack.port}${TUNNEL_PATH}`, {
      ca: fs.readFileSync(stack.caPath),
      headers: { authorization: `Bearer ${token}`, 'slipway-platform': 'linux/amd64' },
    });
    let body = '';
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, code: res.headers['slipway-error'] as string | undefined, body: '' });
      res.resume();
    });
    ws.on('open', () => {
      ws.send(Buffer.from('ping'));
      ws.send(Buffer.alloc(0));
    });
    ws.on('message', (data: Buffer) => {
      if (data.length === 0) {
        ws.close();
        return;
      }
      body += data.toString('utf8');
    });
    ws.on('close', () => resolve({ status: 101, code: undefined, body }));
    ws.on('error', () => resolve({ status: 0, code: undefined, body }));
  });
}

async function agentConnect(stack: SlipwayStack, token: string): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port: stack.port, ca: fs.readFileSync(stack.caPath), servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  await once(socket, 'secureConnect');
  socket.write(`GET ${AGENT_CONNECT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: slipway-agent/1\r\nAuthorization: Bearer ${token}\r\nslipway-agent-platform: linux/amd64\r\n\r\n`);
  let text = '';
  socket.setEncoding('utf8');
  for await (const chunk of socket) text += chunk;
  return text;
}

describe("a token of project alpha never reaches beta's builder", () => {
  test('HTTP/2 and WebSocket tunnels through either replica go to alpha\'s builder (forwarded where needed), never beta\'s', async () => {
    const alpha = await acquireBuild(one, { project: 'alpha' });
    tokensSeen.add(alpha.token);
    assert.equal(alpha.agentId, 'alpha-builder');
    for (const stack of [one, two]) {
      const viaH2 = await h2Tunnel(stack, { authorization: `Bearer ${alpha.token}` }, 'hello alpha');
      assert.equal(viaH2.status, 200);
      assert.equal(viaH2.body, 'hello alpha', 'echoed by alpha\'s builder');
      const viaWs = await wsTunnel(stack, alpha.token);
      assert.equal(viaWs.body, 'ping');
    }
    const named = await h2Tunnel(two, { authorization: `Bearer ${alpha.token}`, 'slipway-project': 'beta' });
    assert.equal(named.status, 403);
    assert.equal(canary.connections, 0, "beta's upstream saw nothing");
  });

  test("the lifecycle API refuses alpha's tokens on beta's build, on both replicas", async () => {
    const alpha = await acquireBuild(one, { project: 'alpha' });
    const alphaProject = await one.clientToken('alpha');
    tokensSeen.add(alphaProject);
    for (const stack of [one, two]) {
      for (const token of [alpha.token, alphaProject]) {
        for (const [method, path, body] of [
          ['POST', `/v1/builds/${betaBuild.buildId}/acquire`, { platform: 'linux/amd64' }],
          ['POST', `/v1/builds/${betaBuild.buildId}/heartbeat`, undefined],
          ['POST', `/v1/builds/${betaBuild.buildId}/finish`, undefined],
          ['POST', `/v1/builds/${betaBuild.buildId}/cancel`, undefined],
          ['GET', `/v1/builds/${betaBuild.buildId}`, undefined],
        ] as const) {
          const answer = await gatewayApi<{ error?: { code: string } }>(stack, method, path, token, body);
          // A project token may read its own project's builds; another project's build does not exist for it.
          const expected = method === 'GET' && token === alphaProject ? 404 : 403;
          assert.equal(answer.status, expected, `${method} ${path} with alpha's ${token === alphaProject ? 'project' : 'build'} token`);
          assert.equal(answer.body.error?.code, expected === 404 ? 'NOT_FOUND' : 'FORBIDDEN');
        }
      }
    }
    const status = await gatewayApi<{ allocations: Array<{ state: string }> }>(two, 'GET', `/v1/builds/${betaBuild.buildId}`, betaBuild.token);
    assert.equal(status.body.allocations[0]?.state, 'active', "beta's build is untouched");
  });

  test('the replica-forward path cannot be used by clients, nor steered to another builder by a replica', async () => {
    const alpha = await acquireBuild(one, { project: 'alpha' });
    const asClient = await h2Tunnel(two, { authorization: `Bearer ${alpha.token}`, 'slipway-forwarded-authorization': `Bearer ${alpha.token}`, 'slipway-builder-id': 'beta-builder' }, 'x', REPLICA_FORWARD_PATH);
    assert.equal(asClient.status, 401, 'a client token is not a replica token');
    // Even a genuine replica asking for beta's builder with alpha's token is refused: the far
    // replica routes by the client's own build, and alpha's build is not on beta's builder.
    const replicaToken = await new TokenIssuer({ issuer: 'slipway-test', privateJwk: pki.signingKey.privateJwk }).issueReplicaToken('gw-one', 60);
    const steered = await h2Tunnel(
      two,
      { authorization: `Bearer ${replicaToken}`, 'slipway-forwarded-authorization': `Bearer ${alpha.token}`, 'slipway-builder-id': 'beta-builder' },
      'x',
      REPLICA_FORWARD_PATH,
    );
    assert.notEqual(steered.status, 200);
    assert.equal(canary.connections, 0, "beta's upstream saw nothing");
  });
});

describe('every path refuses bad tokens with a code and no stream', () => {
  const other = generateSigningKey('other');
  const mine = (): TokenIssuer => new TokenIssuer({ issuer: 'slipway-test', privateJwk: pki.signingKey.privateJwk });
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => {
    const now = Math.floor(Date.now() / 1000);
    return { iss: 'slipway-test', aud: 'slipway', sub: 'mallory', project: 'alpha', scope: 'build', build: betaBuild.buildId, iat: now, nbf: now, exp: now + 600, jti: randomUUID(), ...over };
  };
  const keyOf = (jwk: object) => createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
  const sign = (c: Record<string, unknown>, kid = pki.signingKey.privateJwk.kid!): Promise<string> =>
    new SignJWT(c).setProtectedHeader({ alg: 'ES256', kid }).sign(keyOf(pki.signingKey.privateJwk));
  const cases = async (): Promise<Array<[string, string]>> => {
    const pub = JSON.stringify(pki.signingKey.publicJwk);
    const hsInput = `${b64({ alg: 'HS256', kid: pki.signingKey.privateJwk.kid })}.${b64(claims())}`;
    const revokedId = randomUUID();
    const revoked = await mine().issueProjectToken({ project: 'alpha', subject: 'x', scopes: ['build'], ttlSec: 600, tokenId: revokedId });
    const admin = await one.adminToken();
    await gatewayApi(one, 'POST', '/v1/admin/projects', admin, { name: 'alpha' });
    assert.equal((await gatewayApi(one, 'DELETE', `/v1/admin/tokens/${revokedId}`, admin)).status, 204);
    // Revoked through replica one; replica two learns it within its refresh interval.
    await new Promise((r) => setTimeout(r, 750));
    const now = Math.floor(Date.now() / 1000);
    return [
      ['alg none', `${b64({ alg: 'none', kid: pki.signingKey.privateJwk.kid })}.${b64(claims())}.`],
      ['HS256 signed with the public key', `${hsInput}.${createHmac('sha256', pub).update(hsInput).digest('base64url')}`],
      ['expired', await sign(claims({ iat: now - 7200, nbf: now - 7200, exp: now - 3600 }))],
      ['not yet valid', await sign(claims({ nbf: now + 3600, exp: now + 7200 }))],
      ['wrong issuer', await sign(claims({ iss: 'someone-else' }))],
      ['wrong audience', await sign(claims({ aud: 'slipway-agent' }))],
      ['unknown kid', await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: 'other' }).sign(keyOf(other.privateJwk))],
      ['revoked', revoked],
      ['oversized', `${'a'.repeat(9000)}.b.c`],
      ['malformed', 'not.a.jwt'],
    ];
  };

  test('HTTP/2 tunnel, WebSocket tunnel, builds API, admin API, replica forward and agent link', async () => {
    const replicaToken = await mine().issueReplicaToken('gw-one', 60);
    for (const [name, token] of await cases()) {
      tokensSeen.add(token);
      const h2 = await h2Tunnel(one, { authorization: `Bearer ${token}` });
      assert.equal(h2.status, 401, `h2 tunnel, ${name}: ${h2.code}`);
      assert.equal(h2.code, 'UNAUTHENTICATED');
      const ws = await wsTunnel(two, token);
      assert.equal(ws.status, 401, `websocket tunnel, ${name}`);
      const builds = await gatewayApi<{ error?: { code: string } }>(one, 'POST', '/v1/builds', token, { platforms: ['linux/amd64'] });
      assert.equal(builds.status, 401, `builds API, ${name}`);
      const adminApi = await gatewayApi(two, 'GET', '/v1/admin/projects', token);
      assert.equal(adminApi.status, 401, `admin API, ${name}`);
      const forward = await h2Tunnel(
        two,
        { authorization: `Bearer ${replicaToken}`, 'slipway-forwarded-authorization': `Bearer ${token}`, 'slipway-builder-id': 'beta-builder' },
        'x',
        REPLICA_FORWARD_PATH,
      );
      assert.equal(forward.status, 401, `replica forward, ${name}`);
      const agent = await agentConnect(one, token);
      assert.match(agent, /^HTTP\/1\.1 401 /, `agent link, ${name}`);
    }
    assert.equal(canary.connections, 0, 'no stream reached an upstream');
  });
});

describe('revocation', () => {
  test("a revoked project token is refused at once, and so are the build tokens made with it", async () => {
    const admin = await one.adminToken();
    await gatewayApi(one, 'POST', '/v1/admin/projects', admin, { name: 'gamma' });
    const issued = await gatewayApi<{ id: string; token: string }>(one, 'POST', '/v1/admin/projects/gamma/tokens', admin, { scopes: ['build'], ttlSec: 3600 });
    assert.equal(issued.status, 201);
    tokensSeen.add(issued.body.token);
    const created = await gatewayApi<{ buildId: string; token: string }>(one, 'POST', '/v1/builds', issued.body.token, { platforms: ['linux/amd64'] });
    assert.equal(created.status, 201);
    assert.equal((await gatewayApi(one, 'DELETE', `/v1/admin/tokens/${issued.body.id}`, admin)).status, 204);
    const again = await gatewayApi<{ error: { message: string } }>(one, 'POST', '/v1/builds', issued.body.token, { platforms: ['linux/amd64'] });
    assert.equal(again.status, 401);
    assert.match(again.body.error.message, /revoked/);
    const child = await gatewayApi<{ error: { message: string } }>(one, 'POST', `/v1/builds/${created.body.buildId}/acquire`, created.body.token, { platform: 'linux/amd64' });
    assert.equal(child.status, 401);
    assert.match(child.body.error.message, /revoked/);
  });
});

describe('rate limits', () => {
  test("a burst from one token is limited while another token's builds still open streams", async () => {
    const lines: string[] = [];
    const stack = await startStack({ pki, limits: { authPerAddress: { capacity: 10_000, refillPerSec: 10_000 }, opensPerToken: { capacity: 5, refillPerSec: 0.5 }, opensPerAddress: { capacity: 10_000, refillPerSec: 10_000 }, maxStreamsPerToken: 100, maxKeys: 1000 }, auditLines: lines });
    try {
      await stack.startAgent({ agentId: 'rl-builder', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
      const noisy = await acquireBuild(stack, { project: 'noisy' });
      const quiet = await acquireBuild(stack, { project: 'noisy' });
      const burst = await Promise.all(Array.from({ length: 20 }, () => h2Tunnel(stack, { authorization: `Bearer ${noisy.token}` })));
      const limited = burst.filter((a) => a.status === 429);
      assert.ok(limited.length >= 10, `most of the burst was limited (${limited.length} of 20)`);
      assert.ok(limited.every((a) => a.code === 'RATE_LIMITED'));
      const calm = await Promise.all(Array.from({ length: 5 }, () => h2Tunnel(stack, { authorization: `Bearer ${quiet.token}` }, 'quiet')));
      assert.deepEqual(
        calm.map((a) => a.status),
        [200, 200, 200, 200, 200],
        "the other token's streams all opened",
      );
      assert.ok(lines.some((l) => /"decision":"deny"/.test(l) && /RATE_LIMITED/.test(l)), 'the limit was audited');
    } finally {
      await stack.close();
    }
  });
});

describe('the audit log', () => {
  test('records allowed and denied decisions on each path, and never a token', () => {
    const records = auditLines.map((l) => JSON.parse(l) as { path: string; decision: string; code?: string });
    for (const path of ['tunnel', 'builds', 'admin', 'agent', 'forward']) {
      assert.ok(records.some((r) => r.path === path && r.decision === 'deny' && r.code), `a denial on ${path}`);
    }
    assert.ok(records.some((r) => r.path === 'tunnel' && r.decision === 'allow'));
    const text = auditLines.join('');
    for (const token of tokensSeen) {
      if (token.length > 20) assert.ok(!text.includes(token), 'no token in the audit log');
    }
    assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\./.test(text), 'nothing JWT-shaped in the audit log');
  });
});
