// A CI job with no Slipway secret: the slipway program finds the job's OIDC token, the gateway
// program exchanges it under the project's trust policy, and the build goes through. The issuer is
// a local HTTPS one (discovery + JWKS, ES256) that the gateway trusts through SLIPWAY_OIDC_CA.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { once } from 'node:events';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { createLogger } from '@slipway/proto';
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { TokenIssuer, makeTestPki, type TestPki } from '@slipway/gateway';
import { Agent, loadConfig as loadAgentConfig } from '@slipway/agent';
import {
  REPO_ROOT,
  SLIPWAY_BIN,
  freePort,
  runCommand,
  spawnManaged,
  startEchoServer,
  tempDir,
  type CommandResult,
  type EchoServer,
  type ManagedProcess,
  type TempDir,
} from '@slipway/e2e';

const quiet = process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent';

// The issuer side of a CI: what GitLab serves at its issuer URL, and the tokens it hands jobs.
class LocalOidcIssuer {
  private readonly kid = `k-${randomBytes(4).toString('hex')}`;
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;

  private constructor(
    private readonly server: https.Server,
    readonly url: string,
  ) {
    ({ privateKey: this.privateKey, publicKey: this.publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' }));
    server.on('request', (req, res) => {
      const body =
        req.url === '/.well-known/openid-configuration'
          ? { issuer: this.url, jwks_uri: `${this.url}/jwks` }
          : req.url === '/jwks'
            ? { keys: [{ ...this.publicKey.export({ format: 'jwk' }), kid: this.kid, alg: 'ES256', use: 'sig' }] }
            : undefined;
      res.statusCode = body ? 200 : 404;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(body ?? {}));
    });
  }

  static async start(pki: TestPki): Promise<LocalOidcIssuer> {
    const server = https.createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return new LocalOidcIssuer(server, `https://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }

  /** A job token as GitLab writes it into an `id_tokens:` variable. */
  token(claims: Record<string, unknown>, lifeSec = 300): string {
    const now = Math.floor(Date.now() / 1000);
    const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const input = `${part({ alg: 'ES256', typ: 'JWT', kid: this.kid })}.${part({ iss: this.url, aud: 'slipway', iat: now, nbf: now, exp: now + lifeSec, ...claims })}`;
    return `${input}.${sign('sha256', Buffer.from(input), { key: this.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

let pki: TestPki;
let issuer: LocalOidcIssuer;
let echo: EchoServer;
let gateway: ManagedProcess;
let gatewayUrl: string;
let agent: Agent;
let home: TempDir;
let tokens: TokenIssuer;

before(async () => {
  pki = await makeTestPki();
  issuer = await LocalOidcIssuer.start(pki);
  echo = await startEchoServer();
  home = await tempDir('cli-oidc');
  const port = await freePort();
  gatewayUrl = `https://127.0.0.1:${port}`;
  // The gateway program itself, configured as an operator would: its key signs what the test issues.
  gateway = spawnManaged(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'gateway/src/main.ts')], {
    name: 'gateway',
    cwd: REPO_ROOT,
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      SLIPWAY_LISTEN: `127.0.0.1:${port}`,
      SLIPWAY_TLS_CERT: pki.serverCertPath,
      SLIPWAY_TLS_KEY: pki.serverKeyPath,
      SLIPWAY_TOKEN_ISSUER: 'slipway-test',
      SLIPWAY_TOKEN_JWKS: pki.jwksPath,
      SLIPWAY_SIGNING_KEY: pki.jwksPrivatePath,
      SLIPWAY_OIDC_CA: pki.caCertPath,
      SLIPWAY_LOG_LEVEL: 'info',
    },
  });
  await gateway.waitForOutput(/gateway listening/);
  tokens = new TokenIssuer({ issuer: 'slipway-test', privateJwk: pki.signingKey.privateJwk });
  agent = new Agent(
    loadAgentConfig(
      {
        SLIPWAY_GATEWAY: gatewayUrl,
        SLIPWAY_AGENT_TOKEN: await tokens.issueAgentToken({ agentId: 'oidc-amd64', fleet: 'test', ttlSec: 3600 }),
        SLIPWAY_AGENT_ID: 'oidc-amd64',
        SLIPWAY_PLATFORM: 'linux/amd64',
        SLIPWAY_UPSTREAM: `buildkitd:${echo.address}`,
        SLIPWAY_CA_CERT: pki.caCertPath,
      },
      [],
    ),
    createLogger('agent', quiet),
  );
  agent.start();
  await gateway.waitForOutput(/builder registered.*oidc-amd64/);

  const admin = { SLIPWAY_ADMIN_TOKEN: await tokens.issueAdminToken('alice', 3600) };
  ok(await slipway(['projects', 'create', 'web'], admin), 'projects create');
  ok(
    await slipway(['trust', 'add', 'web', '--issuer', issuer.url, '--audience', 'slipway', '--condition', 'project_path=acme/web', '--condition', 'ref=main', '--id', 'gitlab-main'], admin),
    'trust add',
  );
});

after(async () => {
  await agent?.close();
  await gateway?.stop();
  await issuer?.close();
  await echo?.close();
  await home?.remove();
  await pki?.cleanup();
});

/** The real CLI in a GitLab job's environment: nothing Slipway-secret in it, nothing stored. */
function slipway(args: string[], env: Record<string, string>, input?: string): Promise<CommandResult> {
  return runCommand(process.execPath, [SLIPWAY_BIN, ...args], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', XDG_CONFIG_HOME: home.path, SLIPWAY_GATEWAY: gatewayUrl, SLIPWAY_CA_CERT: pki.caCertPath, ...env },
    input,
    allowFailure: true,
    timeoutMs: 60_000,
  });
}

function ok(result: CommandResult, what: string): void {
  assert.equal(result.code, 0, `${what}: exit ${result.code}\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`);
}

function gitlabJob(idToken: string, extra: Record<string, string> = {}): Record<string, string> {
  return { GITLAB_CI: 'true', SLIPWAY_ID_TOKEN: idToken, SLIPWAY_PROJECT: 'web', ...extra };
}

const JWT = /[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/;

test("a GitLab job with no Slipway token builds with its OIDC identity, and the CLI says which CI it used", async () => {
  const idToken = issuer.token({ sub: 'project_path:acme/web:ref_type:branch:ref:main', project_path: 'acme/web', ref: 'main' });
  const payload = randomBytes(64 * 1024).toString('hex');
  const result = await slipway(['dial-stdio', '--platform', 'linux/amd64'], gitlabJob(idToken), payload);
  ok(result, 'dial-stdio');
  assert.equal(result.stdout, payload, 'the builder echoed exactly what went in');
  assert.match(result.stderr, /GitLab CI detected: using its OIDC identity for project web/);
  assert.doesNotMatch(result.stderr, JWT, 'no token appears in the output');
});

test("a job whose claims the trust policy does not accept is refused with the claim named (exit 4)", async () => {
  const idToken = issuer.token({ sub: 'project_path:acme/fork:ref_type:branch:ref:main', project_path: 'acme/fork', ref: 'main' });
  const result = await slipway(['dial-stdio', '--platform', 'linux/amd64'], gitlabJob(idToken), 'x');
  assert.equal(result.code, 4, result.stderr);
  assert.match(result.stderr, /did not exchange this GitLab CI job's OIDC token for project web: .*project_path is 'acme\/fork', expected 'acme\/web'/);
  assert.doesNotMatch(result.stderr, JWT);
});

test('an expired job token is refused as unauthenticated (exit 3)', async () => {
  const idToken = issuer.token({ sub: 'project_path:acme/web:ref_type:branch:ref:main', project_path: 'acme/web', ref: 'main' }, -600);
  const result = await slipway(['dial-stdio', '--platform', 'linux/amd64'], gitlabJob(idToken), 'x');
  assert.equal(result.code, 3, result.stderr);
  assert.match(result.stderr, /did not exchange this GitLab CI job's OIDC token for project web: OIDC token expired at /);
});

test('a CI job without SLIPWAY_PROJECT is told to set it (exit 2), before anything is sent', async () => {
  const idToken = issuer.token({ sub: 'x', project_path: 'acme/web', ref: 'main' });
  const { SLIPWAY_PROJECT: _unset, ...env } = gitlabJob(idToken);
  const result = await slipway(['dial-stdio', '--platform', 'linux/amd64'], env, 'x');
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /SLIPWAY_PROJECT \(or --project\) is required to exchange this GitLab CI job's OIDC identity/);
});
