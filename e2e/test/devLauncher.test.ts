// `npm start` (deploy/local/start.ts) as a user runs it: a real process, real TLS, its own PKI
// and tokens, the agent's upstream an echo server standing in for BuildKit.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { TUNNEL_PATH, Header } from '@slipway/proto';
import { hostPlatform } from '@slipway/agent';
import { freePort, runCommand, spawnManaged, startEchoServer, tempDir, type EchoServer, type ManagedProcess, type TempDir } from '../src/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
// The tsx binary that `npx tsx` resolves to. Not npx itself: npm exec answers SIGTERM by exiting
// 143 at once, without waiting for its child, so its status would say nothing about the launcher.
const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');

function parseEnvFile(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^export ([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    assert.ok(m, `dev.env line is not 'export NAME=VALUE': ${JSON.stringify(line)}`);
    const raw = m[2]!;
    vars[m[1]!] = raw.startsWith("'") ? raw.slice(1, -1).replace(/'\\''/g, "'") : raw;
  }
  return vars;
}

interface Reply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let responseHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
      responseHeaders = h;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks).toString('utf8') }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

describe('dev launcher (npm start)', () => {
  let scratch: TempDir;
  let echo: EchoServer;
  let port: number;
  let launcher: ManagedProcess;
  let env: Record<string, string>;
  let session: http2.ClientHttp2Session;

  before(async () => {
    scratch = await tempDir('dev-launcher');
    echo = await startEchoServer();
    port = await freePort();
    launcher = spawnManaged(
      TSX,
      ['deploy/local/start.ts', '--listen', `127.0.0.1:${port}`, '--dir', scratch.path, '--upstream', `buildkitd:tcp://127.0.0.1:${echo.port}`],
      { cwd: REPO_ROOT, name: 'dev-launcher' },
    );
    // dev.env is written (whole, by rename) just before this line is printed.
    await launcher.waitForOutput(/^Slipway is running/, 60_000);
    env = parseEnvFile(await readFile(path.join(scratch.path, 'dev.env'), 'utf8'));
    session = http2.connect(env['SLIPWAY_GATEWAY']!, { ca: await readFile(env['SLIPWAY_CA_CERT']!) });
    session.on('error', () => {});
  });

  after(async () => {
    session?.close();
    await launcher?.stop('SIGKILL', 0);
    await echo?.close();
    await scratch?.remove();
  });

  it('writes dev.env (mode 0600) with the gateway URL, a token, an admin token, the project and the CA', async () => {
    assert.deepEqual(Object.keys(env).sort(), ['SLIPWAY_ADMIN_TOKEN', 'SLIPWAY_CA_CERT', 'SLIPWAY_GATEWAY', 'SLIPWAY_PROJECT', 'SLIPWAY_TOKEN']);
    assert.equal(env['SLIPWAY_GATEWAY'], `https://127.0.0.1:${port}`);
    assert.equal(env['SLIPWAY_PROJECT'], 'dev');
    assert.match(env['SLIPWAY_TOKEN']!, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.equal(env['SLIPWAY_CA_CERT'], path.join(scratch.path, 'pki', 'ca.pem'));
    // The admin token drives the admin API of the running launcher.
    const projects = await request(session, { ':method': 'GET', ':path': '/v1/admin/projects', authorization: `Bearer ${env['SLIPWAY_ADMIN_TOKEN']}` }, '');
    assert.equal(projects.status, 200, projects.body);
    assert.equal((await stat(path.join(scratch.path, 'dev.env'))).mode & 0o777, 0o600);
    assert.match(launcher.output(), new RegExp(`buildkitd:tcp://127\\.0\\.0\\.1:${echo.port} \\(from --upstream\\)`));
  });

  it('serves /healthz and /readyz over TLS signed by the dev CA', async () => {
    const health = await request(session, { ':path': '/healthz' });
    assert.equal(health.status, 200, health.body);
    assert.deepEqual(JSON.parse(health.body), { status: 'ok' });
    const ready = await request(session, { ':path': '/readyz' });
    assert.equal(ready.status, 200, ready.body);
    assert.equal(JSON.parse(ready.body).status, 'ready');
  });

  it('has its local agent connected, as /metrics shows', async () => {
    const metrics = await request(session, { ':path': '/metrics' });
    assert.equal(metrics.status, 200);
    const series = metrics.body.split('\n').filter((l) => l.startsWith('slipway_agents_connected{'));
    assert.deepEqual(series, [`slipway_agents_connected{platform="${hostPlatform()}",state="ready"} 1`], metrics.body);
  });

  it('carries a tunnel with the dev.env token through the agent to its upstream', async () => {
    // The dev.env token is a project token: it creates a build, whose token then opens tunnels.
    const created = await request(
      session,
      { ':method': 'POST', ':path': '/v1/builds', authorization: `Bearer ${env['SLIPWAY_TOKEN']}`, 'content-type': 'application/json' },
      JSON.stringify({ platforms: [hostPlatform()] }),
    );
    assert.equal(created.status, 201, created.body);
    const build = JSON.parse(created.body) as { buildId: string; token: string };
    const acquired = await request(
      session,
      { ':method': 'POST', ':path': `/v1/builds/${build.buildId}/acquire`, authorization: `Bearer ${build.token}`, 'content-type': 'application/json' },
      JSON.stringify({ platform: hostPlatform() }),
    );
    assert.equal((JSON.parse(acquired.body) as { state: string }).state, 'active', acquired.body);
    const reply = await request(
      session,
      {
        ':method': 'POST',
        ':path': TUNNEL_PATH,
        authorization: `Bearer ${build.token}`,
        [Header.platform]: hostPlatform()!,
        [Header.project]: env['SLIPWAY_PROJECT']!,
      },
      'ping through slipway',
    );
    assert.equal(reply.status, 200, `${reply.headers[Header.errorCode]}: ${reply.body}`);
    assert.equal(reply.body, 'ping through slipway');
    assert.equal(echo.dataConnections, 1, 'one upstream connection carried the stream');
  });

  it('drains and exits 0 on SIGTERM', async () => {
    session.close();
    const status = await launcher.stop('SIGTERM', 30_000);
    assert.deepEqual({ code: status.code, signal: status.signal }, { code: 0, signal: null }, launcher.output());
    assert.match(launcher.output(), /"msg":"stopped"/);
  });
});

describe('dev launcher configuration', () => {
  it('reports every problem at once and exits 2 without starting anything', async () => {
    const scratch = await tempDir('dev-launcher-config');
    try {
      const result = await runCommand(
        TSX,
        ['deploy/local/start.ts', '--listen', 'nowhere', '--upstream', 'buildkit:/x', '--tls-name', 'not_a_name', '--dir', scratch.path, '--colour'],
        { cwd: REPO_ROOT, allowFailure: true, timeoutMs: 60_000 },
      );
      assert.equal(result.code, 2, result.stderr);
      for (const expected of [/--listen \(SLIPWAY_DEV_LISTEN\) must be HOST:PORT/, /upstream kind must be one of/, /--tls-name .* got 'not_a_name'/, /unknown flag '--colour'/]) {
        assert.match(result.stderr, expected);
      }
      assert.deepEqual(await readdir(scratch.path), []);
    } finally {
      await scratch.remove();
    }
  });
});
