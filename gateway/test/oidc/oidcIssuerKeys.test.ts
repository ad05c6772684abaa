import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { exportJWK } from 'jose';
import { makeTestPki, type TestPki } from '../../src/devPki.js';
import { GatewayError, type GatewayErrorCode } from '../../src/gatewayError.js';
import { issuerUrlProblem, OidcIssuerKeys, type OidcIssuerKeysOptions } from '../../src/oidc/oidcIssuerKeys.js';
import { json, JWKS_PATH, TestIssuer } from './testIssuer.js';

const COOLDOWN_MS = 60_000;
const MAX_AGE_MS = 600_000;
const BACKOFF_MS = 5_000;

let pki: TestPki;
let issuer: TestIssuer;
let clock: { ms: number };

function keysFor(options: OidcIssuerKeysOptions = {}): OidcIssuerKeys {
  return new OidcIssuerKeys({
    extraCa: pki.caCertPem,
    unknownKidCooldownMs: COOLDOWN_MS,
    maxAgeMs: MAX_AGE_MS,
    failureBackoffMs: BACKOFF_MS,
    now: () => clock.ms,
    ...options,
  });
}

async function refused(attempt: Promise<unknown>, code: GatewayErrorCode, message: RegExp): Promise<GatewayError> {
  const err = await attempt.then(
    () => assert.fail(`expected ${code} matching ${message}, but it succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  return err;
}

function counts(): { discovery: number; jwks: number } {
  return { ...issuer.requests };
}

before(async () => {
  pki = await makeTestPki();
});
after(async () => {
  await pki?.cleanup();
});
beforeEach(async () => {
  await issuer?.close();
  issuer = await TestIssuer.start({ certPem: pki.serverCertPem, keyPem: pki.serverKeyPem });
  clock = { ms: Date.now() };
});
after(async () => {
  await issuer?.close();
});

describe('OidcIssuerKeys: discovery, cache and refetches', () => {
  it('finds the JWKS through discovery and then answers from its cache', async () => {
    const keys = keysFor();
    const key = await keys.getKey(issuer.url, issuer.kid);
    assert.equal(key.kid, issuer.kid);
    assert.equal(key.alg, 'RS256');
    assert.ok(key.key.equals(issuer.publicKey));
    await keys.getKey(issuer.url, issuer.kid);
    clock.ms += MAX_AGE_MS - 1;
    await keys.getKey(issuer.url, issuer.kid);
    assert.deepEqual(counts(), { discovery: 1, jwks: 1 });
  });

  it('shares one fetch among concurrent lookups on a cold cache', async () => {
    const keys = keysFor();
    const found = await Promise.all(Array.from({ length: 25 }, () => keys.getKey(issuer.url, issuer.kid)));
    assert.ok(found.every((k) => k.kid === issuer.kid));
    assert.deepEqual(counts(), { discovery: 1, jwks: 1 });
  });

  it('fetches discovery and keys again once they are older than the max age', async () => {
    const keys = keysFor();
    await keys.getKey(issuer.url, issuer.kid);
    clock.ms += MAX_AGE_MS;
    await Promise.all([keys.getKey(issuer.url, issuer.kid), keys.getKey(issuer.url, issuer.kid)]);
    assert.deepEqual(counts(), { discovery: 2, jwks: 2 });
  });

  it('refetches the JWKS once for an unknown kid, then not again within the cooldown', async () => {
    const keys = keysFor();
    await keys.getKey(issuer.url, issuer.kid);
    // Right after a fetch the cooldown already runs: an unknown kid changes nothing.
    await refused(keys.getKey(issuer.url, 'nope-0'), 'UNAUTHENTICATED', /no key with kid 'nope-0'/);
    assert.deepEqual(counts(), { discovery: 1, jwks: 1 });

    clock.ms += COOLDOWN_MS;
    const err = await refused(keys.getKey(issuer.url, 'nope-1'), 'UNAUTHENTICATED', /no key with kid 'nope-1'/);
    assert.ok(err.message.includes(issuer.url) && err.message.includes(issuer.kid), err.message);
    assert.deepEqual(counts(), { discovery: 1, jwks: 2 });

    // A storm of unknown kids within the cooldown makes no fetch at all.
    clock.ms += COOLDOWN_MS - 1;
    const storm = Array.from({ length: 50 }, (_, i) => refused(keys.getKey(issuer.url, `storm-${i}`), 'UNAUTHENTICATED', /no key with kid/));
    await Promise.all(storm);
    assert.deepEqual(counts(), { discovery: 1, jwks: 2 });
    // The known key still works meanwhile, from the cache.
    assert.equal((await keys.getKey(issuer.url, issuer.kid)).kid, issuer.kid);

    clock.ms += 1;
    await refused(keys.getKey(issuer.url, 'nope-2'), 'UNAUTHENTICATED', /no key with kid 'nope-2'/);
    assert.deepEqual(counts(), { discovery: 1, jwks: 3 });
  });

  it('concurrent unknown kids past the cooldown share one refetch', async () => {
    const keys = keysFor();
    await keys.getKey(issuer.url, issuer.kid);
    clock.ms += COOLDOWN_MS;
    await Promise.all(Array.from({ length: 20 }, (_, i) => refused(keys.getKey(issuer.url, `x-${i}`), 'UNAUTHENTICATED', /no key/)));
    assert.deepEqual(counts(), { discovery: 1, jwks: 2 });
  });

  it('follows a key rotation through the unknown-kid refetch', async () => {
    const keys = keysFor();
    const oldKid = issuer.kid;
    await keys.getKey(issuer.url, oldKid);
    const newKid = await issuer.rotate();
    clock.ms += COOLDOWN_MS;
    const rotated = await keys.getKey(issuer.url, newKid);
    assert.equal(rotated.kid, newKid);
    assert.ok(rotated.key.equals(issuer.publicKey));
    assert.deepEqual(counts(), { discovery: 1, jwks: 2 });
    // The old key left the JWKS, so it left the cache with that fetch.
    await refused(keys.getKey(issuer.url, oldKid), 'UNAUTHENTICATED', new RegExp(`no key with kid '${oldKid}'`));
  });

  it('keeps issuers apart', async () => {
    const other = await TestIssuer.start({ certPem: pki.serverCertPem, keyPem: pki.serverKeyPem }, 'ES256');
    try {
      const keys = keysFor();
      assert.equal((await keys.getKey(other.url, other.kid)).alg, 'ES256');
      await refused(keys.getKey(issuer.url, other.kid), 'UNAUTHENTICATED', /no key with kid/);
      assert.deepEqual(other.requests, { discovery: 1, jwks: 1 });
      assert.deepEqual(counts(), { discovery: 1, jwks: 1 });
    } finally {
      await other.close();
    }
  });

  it('says why a kid present in the JWKS cannot be used', async () => {
    const weakRsa = await exportJWK(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey);
    issuer.answers.jwks = (_req, res) =>
      json(res, {
        keys: [
          issuer.publicJwk,
          { ...issuer.publicJwk, kid: 'enc-1', use: 'enc' },
          { kty: 'oct', kid: 'hmac-1', k: 'c2VjcmV0' },
          { kty: 'OKP', crv: 'Ed25519', kid: 'ed-1', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' },
          { ...issuer.publicJwk, kid: 'twice' },
          { ...issuer.publicJwk, kid: 'twice' },
          { ...weakRsa, kid: 'weak-1' },
        ],
      });
    const keys = keysFor();
    await keys.getKey(issuer.url, issuer.kid);
    await refused(keys.getKey(issuer.url, 'enc-1'), 'UNAUTHENTICATED', /'enc-1' that cannot be used: its use is 'enc'/);
    await refused(keys.getKey(issuer.url, 'hmac-1'), 'UNAUTHENTICATED', /'hmac-1' that cannot be used: .*private or symmetric key material \('k'\)/);
    await refused(keys.getKey(issuer.url, 'ed-1'), 'UNAUTHENTICATED', /only RSA \(RS256\) and EC P-256 \(ES256\)/);
    await refused(keys.getKey(issuer.url, 'twice'), 'UNAUTHENTICATED', /more than one key with this kid/);
    await refused(keys.getKey(issuer.url, 'weak-1'), 'UNAUTHENTICATED', /1024-bit RSA key; at least 2048 bits are required/);
  });
});

describe('OidcIssuerKeys: what an issuer must answer', () => {
  it('refuses a discovery document naming another issuer', async () => {
    issuer.answers.discovery = (_req, res) => json(res, { issuer: 'https://evil.example', jwks_uri: `${issuer.url}${JWKS_PATH}` });
    const err = await refused(keysFor().getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /names issuer 'https:\/\/evil\.example', expected/);
    assert.ok(err.message.includes(`${issuer.url}/.well-known/openid-configuration`), err.message);
    assert.equal(counts().jwks, 0);
  });

  it('refuses a jwks_uri that is not https', async () => {
    issuer.answers.discovery = (_req, res) => json(res, { issuer: issuer.url, jwks_uri: 'http://127.0.0.1:1/jwks' });
    await refused(keysFor().getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /jwks_uri 'http:\/\/127\.0\.0\.1:1\/jwks', expected an https:\/\/ URL/);
    issuer.answers.discovery = (_req, res) => json(res, { issuer: issuer.url });
    await refused(keysFor().getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /jwks_uri missing, expected/);
  });

  it('refuses error statuses and redirects, naming the URL', async () => {
    issuer.answers.jwks = (_req, res) => {
      res.writeHead(503);
      res.end();
    };
    await refused(keysFor().getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', new RegExp(`JWKS at ${issuer.url}${JWKS_PATH}: answered HTTP 503, expected 200`));
    issuer.answers.discovery = (_req, res) => {
      res.writeHead(302, { location: 'https://elsewhere.example/' });
      res.end();
    };
    await refused(keysFor().getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /answered HTTP 302, expected 200 \(redirect to 'https:\/\/elsewhere\.example\/' not followed\)/);
  });

  it('refuses answers that are not JSON or not a JWKS', async () => {
    issuer.answers.jwks = (_req, res) => res.end('<html>hello</html>');
    await refused(keysFor().getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /JWKS at .*: answer is not JSON/);
    issuer.answers.jwks = (_req, res) => json(res, [issuer.publicJwk]);
    await refused(keysFor().getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /is an array, expected an object with a "keys" array/);
    issuer.answers.jwks = (_req, res) => json(res, { keys: [] });
    await refused(keysFor().getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /holds no usable RS256\/ES256 signing key/);
  });

  it('refuses answers larger than the limit, declared or not', async () => {
    const big = { keys: [issuer.publicJwk], padding: 'x'.repeat(4096) };
    issuer.answers.jwks = (_req, res) => json(res, big);
    await refused(keysFor({ maxResponseBytes: 2048 }).getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /answer is \d+ bytes, more than the 2048-byte limit/);
    // Chunked, so only counting the bytes finds out.
    issuer.answers.jwks = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(JSON.stringify(big).slice(0, 3000));
      res.end(JSON.stringify(big).slice(3000));
    };
    await refused(keysFor({ maxResponseBytes: 2048 }).getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /answer is more than the 2048-byte limit/);
  });

  it('gives up on an issuer that does not answer within the timeout', async () => {
    issuer.answers.jwks = () => {}; // Never answers.
    await refused(keysFor({ fetchTimeoutMs: 200 }).getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /JWKS at .*: no complete answer within 200 ms/);
  });

  it('checks the issuer certificate: without the extra CA the fetch fails', async () => {
    const keys = new OidcIssuerKeys({ now: () => clock.ms });
    const err = await refused(keys.getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /discovery document at .*: request failed: .*certificate/i);
    assert.ok(err.message.includes(issuer.url), err.message);
    assert.deepEqual(counts(), { discovery: 0, jwks: 0 });
  });

  it('remembers a failure for the back-off instead of asking again', async () => {
    issuer.answers.jwks = (_req, res) => {
      res.writeHead(500);
      res.end();
    };
    const keys = keysFor();
    await refused(keys.getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /answered HTTP 500/);
    await refused(keys.getKey(issuer.url, issuer.kid), 'UPSTREAM_UNAVAILABLE', /answered HTTP 500.*not asked again until/);
    assert.deepEqual(counts(), { discovery: 1, jwks: 1 });
    delete issuer.answers.jwks;
    clock.ms += BACKOFF_MS;
    assert.equal((await keys.getKey(issuer.url, issuer.kid)).kid, issuer.kid);
    assert.deepEqual(counts(), { discovery: 1, jwks: 2 });
  });

  it('refuses issuer URLs that are not plain https', async () => {
    assert.equal(issuerUrlProblem('https://token.actions.githubusercontent.com'), undefined);
    assert.equal(issuerUrlProblem('https://gitlab.example.com/'), undefined);
    assert.match(issuerUrlProblem('http://gitlab.example.com') ?? '', /is http, expected an https:\/\/ URL/);
    assert.match(issuerUrlProblem('https://user:pw@gitlab.example.com') ?? '', /must not carry credentials/);
    assert.match(issuerUrlProblem('https://gitlab.example.com/?x=1') ?? '', /query or fragment/);
    assert.match(issuerUrlProblem('not a url') ?? '', /is not a URL/);
    assert.match(issuerUrlProblem(undefined) ?? '', /issuer is missing/);
    await refused(keysFor().getKey('http://127.0.0.1:1', 'k'), 'CONFIG_INVALID', /expected an https:\/\/ URL/);
  });

  it('refuses nonsensical options, all at once', () => {
    assert.throws(
      () => new OidcIssuerKeys({ maxAgeMs: 0, fetchTimeoutMs: -1, unknownKidCooldownMs: Number.NaN }),
      (err: unknown) =>
        err instanceof GatewayError &&
        err.code === 'CONFIG_INVALID' &&
        /maxAgeMs/.test(err.message) &&
        /fetchTimeoutMs/.test(err.message) &&
        /unknownKidCooldownMs/.test(err.message),
    );
  });
});
