import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, createPublicKey, randomUUID, sign as cryptoSign, type JsonWebKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, type JWK } from 'jose';
import { GatewayError, type GatewayErrorCode } from '../src/gatewayError.js';
import { generateSigningKey, TokenIssuer } from '../src/tokenIssuer.js';
import { loadVerificationKeys, parseBearer, TokenVerifier } from '../src/tokenVerifier.js';

const ISSUER = 'https://slipway.test';
const key1 = generateSigningKey('k1');
const key2 = generateSigningKey('k2');
const issuer = new TokenIssuer({ issuer: ISSUER, privateJwk: key1.privateJwk });
const verifier = new TokenVerifier({ issuer: ISSUER, keys: { keys: [key1.publicJwk] }, clockToleranceSec: 30 });

const b64 = (value: unknown): string =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const nowSec = (): number => Math.floor(Date.now() / 1000);

function clientClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = nowSec();
  return {
    iss: ISSUER,
    aud: 'slipway',
    sub: 'alice',
    project: 'web-app',
    scope: 'build',
    iat,
    nbf: iat,
    exp: iat + 600,
    jti: randomUUID(),
    ...overrides,
  };
}

/** Signs arbitrary claims with ES256 (key1 unless told), for tokens the issuer refuses to make. */
async function signClaims(
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
  privateJwk: JWK = key1.privateJwk,
): Promise<string> {
  const payload = Object.fromEntries(Object.entries(claims).filter(([, v]) => v !== undefined));
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', kid: privateJwk.kid, ...header })
    .sign(createPrivateKey({ key: privateJwk as JsonWebKey, format: 'jwk' }));
}

async function rejects(
  attempt: Promise<unknown>,
  token: string,
  code: GatewayErrorCode,
  message: RegExp,
): Promise<GatewayError> {
  const err = await attempt.then(
    () => assert.fail(`expected ${code} matching ${message}, but the token was accepted`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  // The token is a credential: no part of it that carries the signature may leak into messages.
  const signature = token.split('.')[2];
  if (token.length > 8) assert.ok(!err.message.includes(token), `message contains the token: ${err.message}`);
  if (signature && signature.length > 8) assert.ok(!err.message.includes(signature), err.message);
  return err;
}

describe('TokenVerifier.verifyClient', () => {
  it('accepts a valid client token and returns the identity', async () => {
    const issuedAt = new Date(Date.now() - 1000);
    const token = await issuer.issueClientToken({
      project: 'web-app',
      subject: 'alice@example.com',
      scopes: ['build', 'cache:read'],
      ttlSec: 900,
      issuedAt,
    });
    const identity = await verifier.verifyClient(token);
    assert.equal(identity.subject, 'alice@example.com');
    assert.equal(identity.project, 'web-app');
    assert.deepEqual(identity.scopes, ['build', 'cache:read']);
    assert.equal(identity.expiresAt.getTime(), (Math.floor(issuedAt.getTime() / 1000) + 900) * 1000);
    assert.match(identity.tokenId ?? '', /^[0-9a-f-]{36}$/);
  });

  it('accepts scope as an array of strings', async () => {
    const token = await signClaims(clientClaims({ scope: ['pull', 'build'] }));
    assert.deepEqual((await verifier.verifyClient(token)).scopes, ['pull', 'build']);
  });

  it('accepts a token that expired within the clock tolerance', async () => {
    const token = await signClaims(clientClaims({ exp: nowSec() - 5 }));
    assert.equal((await verifier.verifyClient(token)).project, 'web-app');
  });

  it('rejects an expired token, saying when it expired', async () => {
    const token = await issuer.issueClientToken({
      project: 'web-app',
      subject: 'alice',
      scopes: ['build'],
      ttlSec: 3600,
      issuedAt: new Date(Date.now() - 2 * 3600_000),
    });
    await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /^token expired at \d{4}-\d\d-\d\dT.*; it is now /);
  });

  it('rejects a token that is not yet valid', async () => {
    const token = await issuer.issueClientToken({
      project: 'web-app',
      subject: 'alice',
      scopes: ['build'],
      ttlSec: 3600,
      issuedAt: new Date(Date.now() + 3600_000),
    });
    await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /token is not valid before \d{4}-/);
  });

  it('rejects a token without exp', async () => {
    const token = await signClaims(clientClaims({ exp: undefined }));
    await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /token has no 'exp' claim/);
  });

  it('rejects a token for another audience', async () => {
    const token = await signClaims(clientClaims({ aud: 'someone-else' }));
    await rejects(
      verifier.verifyClient(token),
      token,
      'UNAUTHENTICATED',
      /^token audience is 'someone-else', expected 'slipway'$/,
    );
  });

  it('rejects a token from another issuer', async () => {
    const token = await signClaims(clientClaims({ iss: 'https://evil.test' }));
    await rejects(
      verifier.verifyClient(token),
      token,
      'UNAUTHENTICATED',
      /^token issuer is 'https:\/\/evil.test', expected 'https:\/\/slipway.test'$/,
    );
  });

  it("rejects alg 'none'", async () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(clientClaims())}.`;
    await rejects(
      verifier.verifyClient(token),
      token,
      'UNAUTHENTICATED',
      /^token algorithm 'none' is not accepted; expected ES256$/,
    );
  });

  it('rejects HS256 signed with the public key as the HMAC secret', async () => {
    const publicKey = createPublicKey({ key: key1.publicJwk as JsonWebKey, format: 'jwk' });
    const secrets = [
      publicKey.export({ type: 'spki', format: 'pem' }),
      publicKey.export({ type: 'spki', format: 'der' }),
      JSON.stringify(key1.publicJwk),
    ];
    for (const secret of secrets) {
      const signingInput = `${b64({ alg: 'HS256', kid: 'k1' })}.${b64(clientClaims())}`;
      const token = `${signingInput}.${createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
      await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /token algorithm 'HS256' is not accepted/);
    }
  });

  it('rejects a token whose kid is unknown, and one without a kid', async () => {
    const unknown = await signClaims(clientClaims(), {}, key2.privateJwk);
    await rejects(verifier.verifyClient(unknown), unknown, 'UNAUTHENTICATED', /^no key with kid 'k2'; known kids are 'k1'$/);

    const signingInput = `${b64({ alg: 'ES256' })}.${b64(clientClaims())}`;
    const signature = cryptoSign('sha256', Buffer.from(signingInput), {
      key: createPrivateKey({ key: key1.privateJwk as JsonWebKey, format: 'jwk' }),
      dsaEncoding: 'ieee-p1363',
    });
    const noKid = `${signingInput}.${signature.toString('base64url')}`;
    await rejects(verifier.verifyClient(noKid), noKid, 'UNAUTHENTICATED', /^token header has no kid; expected one of 'k1'$/);
  });

  it('rejects a token signed by another key under a known kid', async () => {
    const impostor = generateSigningKey('k1');
    const token = await signClaims(clientClaims(), {}, impostor.privateJwk);
    await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /token signature does not verify with the key whose kid is 'k1'/);
  });

  it('rejects a token with a tampered payload', async () => {
    const good = await signClaims(clientClaims());
    const [header, , signature] = good.split('.');
    const token = `${header}.${b64(clientClaims({ project: 'other-project' }))}.${signature}`;
    await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /token signature does not verify/);
  });

  it('rejects an oversized token before parsing it', async () => {
    const token = await signClaims(clientClaims({ padding: 'x'.repeat(9000) }));
    await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /^token is \d+ bytes, more than the 8192-byte limit$/);
    const garbage = 'a'.repeat(8193);
    await rejects(verifier.verifyClient(garbage), garbage, 'UNAUTHENTICATED', /more than the 8192-byte limit/);
  });

  it('rejects malformed tokens, saying what is wrong', async () => {
    const header = b64({ alg: 'ES256', kid: 'k1' });
    const payload = b64(clientClaims());
    const cases: Array<[string, RegExp]> = [
      ['', /^token is empty$/],
      ['notatoken', /^malformed token: expected 3 dot-separated parts \(JWS compact form\), got 1$/],
      [`${header}.${payload}`, /got 2$/],
      [`${header}.${payload}.sig.extra`, /got 4$/],
      [`${header}!.${payload}.sig`, /^malformed token: header is not base64url$/],
      [`${header}.${payload}+/.sig`, /^malformed token: payload is not base64url$/],
      [`${header}.${payload}.si=g`, /^malformed token: signature is not base64url$/],
      [`${b64('{"alg":')}.${payload}.sig`, /^malformed token: header is not JSON$/],
      [`${header}.${b64('not json')}.sig`, /^malformed token: payload is not JSON$/],
      [`${b64('[1,2]')}.${payload}.sig`, /^malformed token: header is \[1,2\], expected a JSON object$/],
      [`${header}.${b64('"a string"')}.sig`, /^malformed token: payload is 'a string', expected a JSON object$/],
      [`${header}..sig`, /^malformed token: payload is not base64url$/],
    ];
    for (const [token, message] of cases) {
      await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', message);
    }
  });

  it('rejects a token without a project, or with an invalid one', async () => {
    const missing = await signClaims(clientClaims({ project: undefined }));
    await rejects(verifier.verifyClient(missing), missing, 'UNAUTHENTICATED', /^token has no 'project' claim; expected a project name matching/);
    for (const project of ['Web App', '-leading-dash', 'a'.repeat(64), 42]) {
      const token = await signClaims(clientClaims({ project }));
      await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /^token project is .*, expected a name matching/);
    }
  });

  it('rejects a token without a subject', async () => {
    const token = await signClaims(clientClaims({ sub: undefined }));
    await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /token has no 'sub' claim/);
  });

  it('rejects a scope claim of the wrong type', async () => {
    const token = await signClaims(clientClaims({ scope: { build: true } }));
    await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /token 'scope' claim is \{"build":true\}, expected/);
  });

  it('is FORBIDDEN without the build scope', async () => {
    const pullOnly = await issuer.issueClientToken({ project: 'web-app', subject: 'bob', scopes: ['pull'], ttlSec: 60 });
    await rejects(
      verifier.verifyClient(pullOnly),
      pullOnly,
      'FORBIDDEN',
      /^token scopes are 'pull', expected them to include 'build'$/,
    );
    const none = await signClaims(clientClaims({ scope: undefined }));
    await rejects(verifier.verifyClient(none), none, 'FORBIDDEN', /^token has no scopes; 'build' is required$/);
    // A substring of a scope is not the scope.
    const lookalike = await signClaims(clientClaims({ scope: 'builder rebuild' }));
    await rejects(verifier.verifyClient(lookalike), lookalike, 'FORBIDDEN', /expected them to include 'build'/);
    // Authentication alone needs no scope.
    assert.equal((await verifier.verifyClient(pullOnly, null)).subject, 'bob');
  });

  it('rejects a valid agent token', async () => {
    const token = await issuer.issueAgentToken({ agentId: 'agent-1', fleet: 'default', ttlSec: 60 });
    await rejects(
      verifier.verifyClient(token),
      token,
      'UNAUTHENTICATED',
      /^token audience is 'slipway-agent', expected 'slipway'$/,
    );
  });

  it('rejects a token addressed to both audiences', async () => {
    const token = await signClaims(clientClaims({ aud: ['slipway', 'slipway-agent'], fleet: 'default' }));
    await rejects(
      verifier.verifyClient(token),
      token,
      'UNAUTHENTICATED',
      /^token audience is \['slipway', 'slipway-agent'\], expected 'slipway' without 'slipway-agent'$/,
    );
    await rejects(verifier.verifyAgent(token), token, 'UNAUTHENTICATED', /expected 'slipway-agent' without 'slipway'$/);
  });

  it('keeps control characters and long values from the token out of messages', async () => {
    const token = await signClaims(clientClaims({ aud: `evil\nFAKE LOG LINE ${'x'.repeat(200)}` }));
    const err = await rejects(verifier.verifyClient(token), token, 'UNAUTHENTICATED', /^token audience is 'evil\?FAKE LOG LINE x+\.\.\., expected 'slipway'$/);
    assert.ok(err.message.length < 160);
  });
});

describe('TokenVerifier.verifyAgent', () => {
  it('accepts a valid agent token', async () => {
    const token = await issuer.issueAgentToken({ agentId: 'builder-7.eu', fleet: 'arm64-pool', ttlSec: 3600 });
    const identity = await verifier.verifyAgent(token);
    assert.equal(identity.agentId, 'builder-7.eu');
    assert.equal(identity.fleet, 'arm64-pool');
    assert.ok(identity.expiresAt.getTime() > Date.now());
  });

  it('rejects a valid client token', async () => {
    const token = await issuer.issueClientToken({ project: 'web-app', subject: 'alice', scopes: ['build'], ttlSec: 60 });
    await rejects(
      verifier.verifyAgent(token),
      token,
      'UNAUTHENTICATED',
      /^token audience is 'slipway', expected 'slipway-agent'$/,
    );
  });

  it('rejects an agent token without a fleet', async () => {
    const token = await signClaims(clientClaims({ aud: 'slipway-agent', project: undefined, scope: undefined }));
    await rejects(verifier.verifyAgent(token), token, 'UNAUTHENTICATED', /^token has no 'fleet' claim; expected a fleet name/);
  });

  it('rejects an expired agent token', async () => {
    const token = await issuer.issueAgentToken({
      agentId: 'agent-1',
      fleet: 'default',
      ttlSec: 60,
      issuedAt: new Date(Date.now() - 3600_000),
    });
    await rejects(verifier.verifyAgent(token), token, 'UNAUTHENTICATED', /^token expired at /);
  });
});

describe('TokenVerifier construction', () => {
  it('accepts several keys and verifies with the one named by kid', async () => {
    const both = new TokenVerifier({ issuer: ISSUER, keys: [key1.publicJwk, key2.publicJwk] });
    assert.deepEqual(both.keyIds, ['k1', 'k2']);
    const token = await new TokenIssuer({ issuer: ISSUER, privateJwk: key2.privateJwk }).issueClientToken({
      project: 'p',
      subject: 's',
      scopes: ['build'],
      ttlSec: 60,
    });
    assert.equal((await both.verifyClient(token)).project, 'p');
  });

  it('accepts imported KeyObjects', async () => {
    const keyObject = createPublicKey({ key: key1.publicJwk as JsonWebKey, format: 'jwk' });
    const v = new TokenVerifier({ issuer: ISSUER, keys: [{ kid: 'k1', key: keyObject }] });
    const token = await issuer.issueClientToken({ project: 'p', subject: 's', scopes: ['build'], ttlSec: 60 });
    assert.equal((await v.verifyClient(token)).subject, 's');
  });

  it('refuses private keys, wrong curves, missing and duplicate kids, reporting all at once', () => {
    const { kid: _kid, ...noKid } = key2.publicJwk;
    assert.throws(
      () =>
        new TokenVerifier({
          issuer: ISSUER,
          keys: [key1.privateJwk, { ...key2.publicJwk, crv: 'P-384' }, noKid, key1.publicJwk, { ...key1.publicJwk }],
        }),
      (err: unknown) => {
        assert.ok(err instanceof GatewayError);
        assert.equal(err.code, 'CONFIG_INVALID');
        assert.match(err.message, /key 'k1' contains private key material \('d'\)/);
        assert.match(err.message, /key 'k2' is kty 'EC' crv 'P-384', expected kty 'EC' crv 'P-256'/);
        assert.match(err.message, /key #2 has no kid/);
        assert.match(err.message, /key #4: kid 'k1' is used by more than one key/);
        return true;
      },
    );
    assert.throws(() => new TokenVerifier({ issuer: ISSUER, keys: { keys: [] } }), /got none/);
    assert.throws(() => new TokenVerifier({ issuer: '', keys: [key1.publicJwk] }), /issuer must be a non-empty string/);
  });
});

describe('parseBearer', () => {
  it('extracts the token', () => {
    assert.equal(parseBearer('Bearer abc.def.ghi'), 'abc.def.ghi');
    assert.equal(parseBearer('bearer   abc.def.ghi  '), 'abc.def.ghi');
  });

  it('rejects missing and non-Bearer headers without echoing credentials', () => {
    const cases: Array<[string | undefined, RegExp]> = [
      [undefined, /^missing Authorization header; expected 'Bearer <token>'$/],
      ['', /^missing Authorization header/],
      ['Basic dXNlcjpzZWNyZXQ=', /^Authorization scheme is 'Basic', expected 'Bearer'$/],
      ['Bearer', /^Authorization header has no token after 'Bearer'$/],
      ['Bearer    ', /^missing Authorization header|no token after 'Bearer'/],
      ['Bearer a.b.c d.e.f', /more than one value after 'Bearer'$/],
    ];
    for (const [header, message] of cases) {
      assert.throws(
        () => parseBearer(header),
        (err: unknown) => {
          assert.ok(err instanceof GatewayError);
          assert.equal(err.code, 'UNAUTHENTICATED');
          assert.match(err.message, message);
          assert.ok(!err.message.includes('dXNlcjpzZWNyZXQ') && !err.message.includes('a.b.c'), err.message);
          return true;
        },
      );
    }
  });
});

describe('loadVerificationKeys', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'slipway-jwks-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a public JWKS usable by TokenVerifier', async () => {
    const path = join(dir, 'jwks.json');
    await writeFile(path, JSON.stringify({ keys: [key1.publicJwk, key2.publicJwk] }));
    const jwks = await loadVerificationKeys(path);
    const token = await issuer.issueClientToken({ project: 'p', subject: 's', scopes: ['build'], ttlSec: 60 });
    assert.equal((await new TokenVerifier({ issuer: ISSUER, keys: jwks }).verifyClient(token)).project, 'p');
  });

  it('refuses a file holding private key material', async () => {
    const path = join(dir, 'jwks.private.json');
    await writeFile(path, JSON.stringify({ keys: [key1.privateJwk] }));
    await assert.rejects(loadVerificationKeys(path), (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.equal(err.code, 'CONFIG_INVALID');
      assert.match(err.message, /contains private key material \(key 'k1' has 'd'\)/);
      assert.ok(!err.message.includes(String(key1.privateJwk.d)), 'message leaks the private key');
      return true;
    });
  });

  it('reports unreadable, non-JSON and non-JWKS files', async () => {
    await assert.rejects(loadVerificationKeys(join(dir, 'absent.json')), /cannot read verification keys from .*absent\.json/);
    const notJson = join(dir, 'bad.json');
    await writeFile(notJson, '{ nope');
    await assert.rejects(loadVerificationKeys(notJson), /bad\.json is not JSON/);
    const notJwks = join(dir, 'array.json');
    await writeFile(notJwks, JSON.stringify([key1.publicJwk]));
    await assert.rejects(loadVerificationKeys(notJwks), /must be a JWKS: an object with a "keys" array/);
    const wrongKey = join(dir, 'rsa.json');
    await writeFile(wrongKey, JSON.stringify({ keys: [{ kty: 'RSA', kid: 'r1', n: 'AQAB', e: 'AQAB' }] }));
    await assert.rejects(loadVerificationKeys(wrongKey), /key 'r1' is kty 'RSA'/);
  });
});

describe('TokenIssuer', () => {
  it('writes iat, nbf, exp, jti and the kid header', async () => {
    const token = await issuer.issueClientToken({ project: 'p', subject: 's', scopes: ['build', 'pull'], ttlSec: 120 });
    const [header, payload] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()));
    assert.deepEqual(header, { alg: 'ES256', kid: 'k1' });
    assert.equal(payload.iss, ISSUER);
    assert.equal(payload.aud, 'slipway');
    assert.equal(payload.scope, 'build pull');
    assert.equal(payload.nbf, payload.iat);
    assert.equal(payload.exp, payload.iat + 120);
    assert.equal(typeof payload.jti, 'string');
  });

  it('refuses to mint tokens the verifier would reject for their shape', async () => {
    await assert.rejects(issuer.issueClientToken({ project: 'Bad Name', subject: 's', scopes: [], ttlSec: 60 }), /does not match/);
    await assert.rejects(issuer.issueClientToken({ project: 'p', subject: 's', scopes: ['a b'], ttlSec: 60 }), /without spaces/);
    await assert.rejects(issuer.issueAgentToken({ agentId: 'a', fleet: 'f', ttlSec: 0 }), /positive integer/);
    assert.throws(() => new TokenIssuer({ issuer: ISSUER, privateJwk: key1.publicJwk }), /without d, expected a private EC P-256 key/);
  });
});
