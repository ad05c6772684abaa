// The exchange against a local HTTP/2 server on a real socket (cleartext: what is under test is
// the exchange and its renewal, not TLS, which the e2e tests cover with the real gateway).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createLogger } from '@slipway/proto';
import { OidcTokenExchange } from '../src/oidcTokenExchange.js';
import { CliError, type CliErrorCode } from '../src/cliError.js';
import type { ApiCarrier } from '../src/gatewayApi.js';

const CI_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjaSJ9.c2lnbmF0dXJl';

interface Seen {
  authorization: string | undefined;
  body: unknown;
}

let server: http2.Http2Server;
let session: http2.ClientHttp2Session;
let seen: Seen[] = [];
let answer: { status: number; body: unknown } = { status: 201, body: {} };

function slipwayToken(n: number, lifeSec: number): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  // iat far from this machine's clock: the life is taken from iat/exp, not from comparing clocks.
  return `${part({ alg: 'ES256' })}.${part({ n, iat: 1_000, exp: 1_000 + lifeSec })}.sig`;
}

const api: ApiCarrier = { carrier: () => Promise.resolve(session) };

before(async () => {
  server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      seen.push({ authorization: headers['authorization'] as string | undefined, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') });
      stream.respond({ ':status': answer.status, 'content-type': 'application/json' });
      stream.end(JSON.stringify(answer.body));
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  session.on('error', () => {});
});

after(async () => {
  session.close();
  await new Promise((r) => server.close(r));
});

function exchangeWith(clock: { now: number }, announced: string[], fetched: { n: number }): OidcTokenExchange {
  return new OidcTokenExchange({
    project: 'web',
    audience: 'slipway',
    env: {},
    log: createLogger('test', 'silent'),
    timeoutMs: 5_000,
    announce: (line) => announced.push(line),
    fetchCiToken: (options) => {
      assert.equal(options.audience, 'slipway');
      fetched.n++;
      return Promise.resolve({ ci: 'gitlab', token: CI_TOKEN });
    },
    now: () => clock.now,
  });
}

test('exchanges the CI token without an Authorization header, reuses the result, and exchanges again near its end', async () => {
  seen = [];
  const clock = { now: 5_000_000 };
  const announced: string[] = [];
  const fetched = { n: 0 };
  const exchange = exchangeWith(clock, announced, fetched);
  answer = { status: 201, body: { token: slipwayToken(1, 600), project: 'web', scopes: ['build'], expiresAt: 'whenever', trusted: true } };

  // Two builds at once share one exchange.
  const [first, again] = await Promise.all([exchange.token(api), exchange.token(api)]);
  assert.equal(first, slipwayToken(1, 600));
  assert.equal(again, first);
  assert.deepEqual(seen, [{ authorization: undefined, body: { project: 'web', token: CI_TOKEN } }]);
  assert.deepEqual(announced, ['GitLab CI detected: using its OIDC identity for project web']);

  // Well inside its life: no new exchange.
  clock.now += 400_000;
  assert.equal(await exchange.token(api), first);
  assert.equal(seen.length, 1);

  // Within a fifth of its 600 s life of the end: a fresh CI token, a fresh exchange.
  answer = { status: 201, body: { token: slipwayToken(2, 600), project: 'web', scopes: ['build'], expiresAt: 'whenever', trusted: false } };
  clock.now += 81_000;
  assert.equal(await exchange.token(api), slipwayToken(2, 600));
  assert.equal(seen.length, 2);
  assert.equal(fetched.n, 2);
  assert.equal(announced.length, 1, 'the CI is announced once');
});

async function failure(status: number, body: unknown, code: CliErrorCode, message: RegExp): Promise<void> {
  answer = { status, body };
  const exchange = exchangeWith({ now: 0 }, [], { n: 0 });
  const err = await exchange.token(api).then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CliError);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  assert.ok(!err.message.includes(CI_TOKEN), 'the CI token is not in the message');
}

test("refusals keep the gateway's words and get exit codes of their own", async () => {
  await failure(403, { error: { code: 'FORBIDDEN', message: "repository is 'acme/other', expected 'acme/web'" } }, 'FORBIDDEN', /GitLab CI job's OIDC token for project web: repository is 'acme\/other', expected 'acme\/web'; see slipway trust list web/);
  await failure(401, { error: { code: 'UNAUTHENTICATED', message: 'OIDC token expired' } }, 'UNAUTHENTICATED', /OIDC token expired$/);
  await failure(401, { error: { code: 'UNAUTHENTICATED', message: "OIDC token aud is 'other', expected 'slipway'" } }, 'UNAUTHENTICATED', /expected 'slipway' \(the CLI asked for audience 'slipway'; SLIPWAY_OIDC_AUDIENCE changes it\)$/);
  await failure(502, { error: { code: 'UPSTREAM_UNAVAILABLE', message: 'issuer https://gitlab.example unreachable' } }, 'ISSUER_UNAVAILABLE', /issuer https:\/\/gitlab.example unreachable/);
  await failure(429, { error: { code: 'RATE_LIMITED', message: 'too many exchanges; retry in 3 s' } }, 'RATE_LIMITED', /retry in 3 s/);
  await failure(404, { error: { code: 'NOT_FOUND', message: 'no route for POST /v1/oidc/exchange' } }, 'NOT_FOUND', /does not offer OIDC exchange .*; use a project token \(SLIPWAY_TOKEN\) instead/);
  await failure(404, { error: { code: 'NOT_FOUND', message: 'this gateway does not exchange CI identities' } }, 'NOT_FOUND', /^this gateway does not exchange CI identities; use a project token/);
});

test('no CI detected is a configuration problem', async () => {
  const exchange = new OidcTokenExchange({
    project: 'web',
    audience: 'slipway',
    env: {},
    log: createLogger('test', 'silent'),
    timeoutMs: 5_000,
  });
  await assert.rejects(exchange.token(api), (err: CliError) => err.code === 'CONFIG_INVALID' && /no supported CI was detected/.test(err.message));
});
