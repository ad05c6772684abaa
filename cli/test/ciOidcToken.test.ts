import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Env } from '@slipway/proto';
import { fetchCiOidcToken, detectCi, type CiOidcTokenOptions } from '../src/ciOidcToken.js';
import { CliError, type CliErrorCode } from '../src/cliError.js';

const AUDIENCE = 'https://slipway.example';

/** A JWT-shaped token (the CLI never verifies it; the gateway does). */
function fakeJwt(claims: Record<string, unknown> = { aud: AUDIENCE }): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'RS256', kid: 'k1' })}.${part({ sub: 'ci-job', ...claims })}.${randomBytes(32).toString('base64url')}`;
}

async function refused(attempt: Promise<unknown>, code: CliErrorCode, message: RegExp, secrets: string[] = []): Promise<CliError> {
  const err = await attempt.then(
    (value) => assert.fail(`expected ${code} matching ${message}, got ${JSON.stringify(value)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CliError, `expected a CliError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  for (const secret of secrets) assert.ok(!err.message.includes(secret), `message contains a credential: ${err.message}`);
  return err;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'slipway-ci-oidc-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('detecting the CI', () => {
  it('finds none outside a supported CI', async () => {
    assert.equal(detectCi({ PATH: '/usr/bin', CI: 'true', GITHUB_ACTIONS: 'false' }), undefined);
    assert.equal(await fetchCiOidcToken({ audience: AUDIENCE, env: { HOME: '/root', BUILDKITE: '' } }), undefined);
  });

  it('tells the supported CIs apart by their own variables', () => {
    assert.equal(detectCi({ GITHUB_ACTIONS: 'true' }), 'github');
    assert.equal(detectCi({ ACTIONS_ID_TOKEN_REQUEST_URL: 'https://x.example/t' }), 'github');
    assert.equal(detectCi({ GITLAB_CI: 'true' }), 'gitlab');
    assert.equal(detectCi({ CIRCLECI: 'true' }), 'circleci');
    assert.equal(detectCi({ BUILDKITE: 'true' }), 'buildkite');
  });

  it('refuses an empty audience', async () => {
    await refused(fetchCiOidcToken({ audience: ' ', env: { CIRCLECI: 'true' } }), 'CONFIG_INVALID', /audience is empty/);
  });
});

describe('GitHub Actions', () => {
  const requestToken = `ghs_${randomBytes(16).toString('hex')}`;
  const idToken = fakeJwt();
  const seen: Array<{ path: string; audience: string | null; apiVersion: string | null; authorization: string | undefined }> = [];
  let server: https.Server;
  let caPem: string;
  let baseUrl: string;

  before(async () => {
    // A self-signed certificate for 127.0.0.1, made by the real openssl, serves as its own CA.
    const made = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
        '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', 'key.pem', '-out', 'cert.pem'],
      { cwd: dir, encoding: 'utf8' },
    );
    assert.equal(made.status, 0, `openssl failed: ${made.stderr || made.error?.message}`);
    caPem = await readFile(join(dir, 'cert.pem'), 'utf8');
    server = https.createServer({ cert: caPem, key: await readFile(join(dir, 'key.pem'), 'utf8') }, (req, res) => {
      res.on('error', () => {});
      const url = new URL(req.url ?? '/', 'https://127.0.0.1');
      seen.push({
        path: url.pathname,
        audience: url.searchParams.get('audience'),
        apiVersion: url.searchParams.get('api-version'),
        authorization: req.headers.authorization,
      });
      const send = (status: number, body: string): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(body);
      };
      // Plays GitHub's endpoint: the runner's request token, then the audience asked for.
      if (req.headers.authorization !== `Bearer ${requestToken}`) return send(401, JSON.stringify({ message: 'Bad credentials' }));
      if (url.pathname === '/garbage') return send(200, '<html>proxy login</html>');
      if (url.pathname === '/no-value') return send(200, JSON.stringify({ count: 1 }));
      const audience = url.searchParams.get('audience');
      if (audience !== AUDIENCE) return send(400, JSON.stringify({ message: `unexpected audience ${audience}` }));
      send(200, JSON.stringify({ count: 1, value: idToken }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  const githubEnv = (path = '/token', token = requestToken): Env => ({
    GITHUB_ACTIONS: 'true',
    ACTIONS_ID_TOKEN_REQUEST_URL: `${baseUrl}${path}?api-version=2.0`,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: token,
  });
  const options = (env: Env): CiOidcTokenOptions => ({ audience: AUDIENCE, env, extraCa: caPem, timeoutMs: 10_000 });

  it('asks the runner endpoint with the request token and the audience', async () => {
    seen.length = 0;
    assert.deepEqual(await fetchCiOidcToken(options(githubEnv())), { ci: 'github', token: idToken });
    assert.deepEqual(seen, [{ path: '/token', audience: AUDIENCE, apiVersion: '2.0', authorization: `Bearer ${requestToken}` }]);
  });

  it('says to grant id-token: write when the runner gave the job no way to ask', async () => {
    for (const env of [
      { GITHUB_ACTIONS: 'true' },
      { GITHUB_ACTIONS: 'true', ACTIONS_ID_TOKEN_REQUEST_TOKEN: requestToken },
      { GITHUB_ACTIONS: 'true', ACTIONS_ID_TOKEN_REQUEST_URL: `${baseUrl}/token` },
    ]) {
      await refused(fetchCiOidcToken(options(env)), 'CONFIG_INVALID', /GitHub Actions.*may not request an OIDC token .*not set\).*`permissions: id-token: write`/, [requestToken]);
    }
    await refused(fetchCiOidcToken(options({ GITHUB_ACTIONS: 'true' })), 'CONFIG_INVALID', /ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN not set/);
  });

  it('refuses when the endpoint refuses, repeating its message but no credential', async () => {
    const wrong = `ghs_${randomBytes(16).toString('hex')}`;
    await refused(fetchCiOidcToken(options(githubEnv('/token', wrong))), 'UNAUTHENTICATED', /answered HTTP 401: Bad credentials; give the job `permissions: id-token: write`/, [wrong, requestToken]);
    await refused(fetchCiOidcToken({ ...options(githubEnv()), audience: 'other' }), 'UNAUTHENTICATED', /answered HTTP 400: unexpected audience other/, [requestToken]);
  });

  it('refuses answers without a token', async () => {
    await refused(fetchCiOidcToken(options(githubEnv('/garbage'))), 'UNAUTHENTICATED', /answered 200 with something that is not JSON/);
    await refused(fetchCiOidcToken(options(githubEnv('/no-value'))), 'UNAUTHENTICATED', /answered 200 without a token: expected JSON \{"value": "<JWT>"\}/);
  });

  it('sends the request token over verified TLS only', async () => {
    const err = await refused(fetchCiOidcToken({ audience: AUDIENCE, env: githubEnv() }), 'UNAUTHENTICATED', /GitHub's OIDC token endpoint https:\/\/127\.0\.0\.1:\d+\/token: request failed: .*certificate/i);
    assert.doesNotMatch(err.message, /api-version|audience=/);
    await refused(fetchCiOidcToken(options({ ...githubEnv(), ACTIONS_ID_TOKEN_REQUEST_URL: 'http://127.0.0.1:1/token' })), 'CONFIG_INVALID', /is http, expected an https:\/\/ URL/);
  });
});

describe('GitLab CI', () => {
  it('takes the id token from SLIPWAY_ID_TOKEN, or the variable named', async () => {
    const token = fakeJwt({ aud: AUDIENCE });
    assert.deepEqual(await fetchCiOidcToken({ audience: AUDIENCE, env: { GITLAB_CI: 'true', SLIPWAY_ID_TOKEN: `${token}\n` } }), { ci: 'gitlab', token });
    const listed = fakeJwt({ aud: ['other', AUDIENCE] });
    assert.deepEqual(
      await fetchCiOidcToken({ audience: AUDIENCE, env: { GITLAB_CI: 'true', BUILD_ID_TOKEN: listed }, gitlabTokenVariable: 'BUILD_ID_TOKEN' }),
      { ci: 'gitlab', token: listed },
    );
  });

  it('says how to set id_tokens when the variable is missing or for another audience', async () => {
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: { GITLAB_CI: 'true' } }), 'CONFIG_INVALID', /GitLab CI, but \$SLIPWAY_ID_TOKEN is empty or not set; give the job id_tokens: \{ SLIPWAY_ID_TOKEN: \{ aud: 'https:\/\/slipway\.example' \} \}/);
    const other = fakeJwt({ aud: 'https://gitlab.com' });
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: { GITLAB_CI: 'true', SLIPWAY_ID_TOKEN: other } }), 'CONFIG_INVALID', /is for audience 'https:\/\/gitlab\.com', not 'https:\/\/slipway\.example'/, [other]);
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: { GITLAB_CI: 'true', SLIPWAY_ID_TOKEN: 'not-a-jwt' } }), 'CONFIG_INVALID', /does not hold a JWT/, ['not-a-jwt']);
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: { GITLAB_CI: 'true' }, gitlabTokenVariable: 'BAD-NAME' }), 'CONFIG_INVALID', /'BAD-NAME' is not a valid variable name/);
  });
});

describe('CircleCI', () => {
  it('takes CIRCLE_OIDC_TOKEN_V2', async () => {
    const token = fakeJwt({ aud: 'org-id-1' });
    assert.deepEqual(await fetchCiOidcToken({ audience: AUDIENCE, env: { CIRCLECI: 'true', CIRCLE_OIDC_TOKEN_V2: token } }), { ci: 'circleci', token });
  });

  it('says that only jobs with a context get a token', async () => {
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: { CIRCLECI: 'true', CIRCLE_OIDC_TOKEN: fakeJwt() } }), 'CONFIG_INVALID', /CIRCLE_OIDC_TOKEN_V2 is not set; CircleCI only gives OIDC tokens to jobs that use a context/);
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: { CIRCLECI: 'true', CIRCLE_OIDC_TOKEN_V2: 'garbage' } }), 'CONFIG_INVALID', /does not hold a JWT/, ['garbage']);
  });
});

describe('Buildkite', () => {
  const token = fakeJwt();
  const agentToken = `bkua_${randomBytes(8).toString('hex')}`;
  let binDir: string;

  before(async () => {
    binDir = await mkdtemp(join(dir, 'bin-'));
    // Plays buildkite-agent: checks its arguments and the agent's access token in its environment.
    const script = [
      '#!/bin/sh',
      'if [ "$FAKE_AGENT_MODE" = hang ]; then exec sleep 30; fi',
      'if [ "$FAKE_AGENT_MODE" = fail ]; then echo "fatal: failed to get OIDC token: 403 Forbidden" >&2; exit 1; fi',
      `if [ "$BUILDKITE_AGENT_ACCESS_TOKEN" != "${agentToken}" ]; then echo "no agent access token" >&2; exit 3; fi`,
      `if [ "$#" -ne 4 ] || [ "$1" != oidc ] || [ "$2" != request-token ] || [ "$3" != --audience ] || [ "$4" != "${AUDIENCE}" ]; then`,
      '  echo "unexpected arguments: $*" >&2; exit 2',
      'fi',
      `echo "${token}"`,
    ].join('\n');
    await writeFile(join(binDir, 'buildkite-agent'), `${script}\n`);
    await chmod(join(binDir, 'buildkite-agent'), 0o755);
  });

  const buildkiteEnv = (extra: Env = {}): Env => ({
    BUILDKITE: 'true',
    BUILDKITE_AGENT_ACCESS_TOKEN: agentToken,
    PATH: `${binDir}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    ...extra,
  });

  it('runs buildkite-agent oidc request-token with the audience and takes its stdout', async () => {
    assert.deepEqual(await fetchCiOidcToken({ audience: AUDIENCE, env: buildkiteEnv() }), { ci: 'buildkite', token });
  });

  it('reports the agent failing, with its last stderr line', async () => {
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: buildkiteEnv({ FAKE_AGENT_MODE: 'fail' }) }), 'UNAUTHENTICATED', /buildkite-agent oidc request-token exited with code 1: fatal: failed to get OIDC token: 403 Forbidden/, [agentToken]);
    await refused(fetchCiOidcToken({ audience: 'other', env: buildkiteEnv() }), 'UNAUTHENTICATED', /exited with code 2: unexpected arguments: oidc request-token --audience other/);
  });

  it('gives up on an agent that does not finish in time', async () => {
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: buildkiteEnv({ FAKE_AGENT_MODE: 'hang' }), timeoutMs: 300 }), 'UNAUTHENTICATED', /did not finish within 300 ms/);
  });

  it('says when buildkite-agent is not on PATH', async () => {
    await refused(fetchCiOidcToken({ audience: AUDIENCE, env: buildkiteEnv({ PATH: dir }) }), 'CONFIG_INVALID', /BUILDKITE is set.*buildkite-agent is not on PATH/);
  });
});
