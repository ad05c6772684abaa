import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { makeTestPki, type TestPki } from '../../src/devPki.js';
import { GatewayError, type GatewayErrorCode } from '../../src/gatewayError.js';
import { OidcIssuerKeys } from '../../src/oidc/oidcIssuerKeys.js';
import { OidcVerifier } from '../../src/oidc/oidcVerifier.js';
import { validateTrustPolicies, type TrustPolicy } from '../../src/oidc/trustPolicy.js';
import { b64, TestIssuer } from './testIssuer.js';

const AUDIENCE = 'https://slipway.example';
const COOLDOWN_MS = 60_000;
const TOLERANCE_SEC = 30;

let pki: TestPki;
let github: TestIssuer;
let stranger: TestIssuer;
let clock: { ms: number };
let verifier: OidcVerifier;
let policies: TrustPolicy[];

before(async () => {
  pki = await makeTestPki();
  const tls = { certPem: pki.serverCertPem, keyPem: pki.serverKeyPem };
  github = await TestIssuer.start(tls, 'RS256');
  stranger = await TestIssuer.start(tls, 'ES256');
});
after(async () => {
  await github?.close();
  await stranger?.close();
  await pki?.cleanup();
});
beforeEach(() => {
  clock = { ms: Date.now() };
  const now = (): number => clock.ms;
  verifier = new OidcVerifier({
    issuerKeys: new OidcIssuerKeys({ extraCa: pki.caCertPem, unknownKidCooldownMs: COOLDOWN_MS, now }),
    clockToleranceSec: TOLERANCE_SEC,
    now,
  });
  policies = validateTrustPolicies([
    {
      id: 'web-main',
      project: 'web',
      issuer: github.url,
      audience: AUDIENCE,
      conditions: { repository: 'acme/web', ref: 'refs/heads/main', workflow: 'build' },
    },
    {
      id: 'web-prs',
      project: 'web',
      issuer: github.url,
      audience: AUDIENCE,
      conditions: { repository: 'acme/web', ref: 'refs/pull/*/merge' },
      untrustedWhen: { event_name: 'pull_request*' },
      scopes: ['build'],
      tokenTtlSec: 600,
    },
    // Another project trusting the other issuer: it must not open project 'web' to it.
    { id: 'api', project: 'api', issuer: stranger.url, audience: AUDIENCE, conditions: { repository: 'acme/api' } },
  ]);
});

function claims(overrides: Record<string, unknown> = {}, issuer: TestIssuer = github): Record<string, unknown> {
  return issuer.githubClaims(AUDIENCE, overrides, clock.ms);
}

function requests(): { github: { discovery: number; jwks: number }; stranger: { discovery: number; jwks: number } } {
  return { github: { ...github.requests }, stranger: { ...stranger.requests } };
}

async function refused(token: string, code: GatewayErrorCode, message: RegExp, project = 'web'): Promise<GatewayError> {
  const err = await verifier.verify(token, project, policies).then(
    () => assert.fail(`expected ${code} matching ${message}, but the token was accepted`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  // The token is a credential: neither it nor its signature may appear in a message.
  const signature = token.split('.')[2] ?? '';
  if (token.length > 8) assert.ok(!err.message.includes(token), `message contains the token: ${err.message}`);
  if (signature.length > 8) assert.ok(!err.message.includes(signature), `message contains the signature: ${err.message}`);
  return err;
}

describe('OidcVerifier: who is trusted', () => {
  it('accepts a push to main of the trusted repository', async () => {
    const token = await github.sign(claims());
    const identity = await verifier.verify(token, 'web', policies);
    assert.equal(identity.subject, 'repo:acme/web:ref:refs/heads/main');
    assert.equal(identity.policyId, 'web-main');
    assert.equal(identity.policy, policies[0]);
    assert.equal(identity.trusted, true);
    assert.deepEqual(identity.untrustedBy, []);
    assert.equal(identity.expiresAt.getTime(), (Math.floor(clock.ms / 1000) + 300) * 1000);
    const audit = identity.claims;
    assert.equal(audit['iss'], github.url);
    assert.equal(audit['aud'], AUDIENCE);
    assert.equal(audit['sub'], 'repo:acme/web:ref:refs/heads/main');
    assert.equal(audit['repository'], 'acme/web');
    assert.equal(audit['ref'], 'refs/heads/main');
    assert.equal(audit['workflow'], 'build');
    assert.equal(audit['event_name'], 'push');
    assert.equal(audit['run_id'], '9000000001');
    // Only selected claims, and never the token.
    assert.equal(audit['actor_id'], undefined);
    assert.ok(!JSON.stringify(audit).includes(token.split('.')[2]!));
  });

  it('refuses another repository, naming the claim', async () => {
    const token = await github.sign(claims({ repository: 'evil/web', sub: 'repo:evil/web:ref:refs/heads/main' }));
    const err = await refused(token, 'FORBIDDEN', /matches no trust policy of project 'web'/);
    assert.match(err.message, /policy 'web-main': repository is 'evil\/web', expected 'acme\/web'/);
    assert.match(err.message, /policy 'web-prs': repository is 'evil\/web', expected 'acme\/web', ref is 'refs\/heads\/main', expected 'refs\/pull\/\*\/merge'/);
  });

  it('refuses a mismatched claim, naming only that claim', async () => {
    const err = await refused(await github.sign(claims({ workflow: 'deploy' })), 'FORBIDDEN', /policy 'web-main': workflow is 'deploy', expected 'build';/);
    assert.doesNotMatch(err.message.split(';')[0]!, /repository|ref is/);
  });

  it('refuses a token from an issuer the project does not trust, without fetching anything', async () => {
    const before = requests();
    const token = await stranger.sign(claims({ repository: 'acme/web' }, stranger));
    await refused(token, 'UNAUTHENTICATED', new RegExp(`issuer is '${stranger.url}'; project 'web' trusts tokens from '${github.url}' only`));
    // Even an issuer another project trusts is not contacted for project 'web'.
    assert.deepEqual(requests(), before);
    const forged = await github.sign(claims({ iss: 'https://evil.example' }));
    await refused(forged, 'UNAUTHENTICATED', /issuer is 'https:\/\/evil\.example'/);
    assert.deepEqual(requests(), before);
  });

  it('accepts the other issuer for the project that trusts it (ES256)', async () => {
    const token = await stranger.sign(claims({ repository: 'acme/api' }, stranger));
    const identity = await verifier.verify(token, 'api', policies);
    assert.equal(identity.policyId, 'api');
  });

  it('refuses a project without policies', async () => {
    await refused(await github.sign(claims()), 'FORBIDDEN', /project 'docs' trusts no OIDC issuer/, 'docs');
  });

  it('marks a pull request untrusted through untrustedWhen, and picks the policy that matched', async () => {
    const token = await github.sign(
      claims({
        sub: 'repo:acme/web:pull_request',
        ref: 'refs/pull/7/merge',
        event_name: 'pull_request',
        head_ref: 'contributor-patch',
        base_ref: 'main',
      }),
    );
    const identity = await verifier.verify(token, 'web', policies);
    assert.equal(identity.policyId, 'web-prs');
    assert.equal(identity.trusted, false);
    assert.deepEqual(identity.untrustedBy, ['event_name']);
    assert.deepEqual(identity.policy.scopes, ['build']);
    assert.equal(identity.policy.tokenTtlSec, 600);
    assert.equal(identity.claims['head_ref'], 'contributor-patch');
  });
});

describe('OidcVerifier: bad tokens', () => {
  it('refuses alg none, with or without a signature part', async () => {
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`;
    await refused(unsigned, 'UNAUTHENTICATED', /unsigned \(alg 'none'\); expected RS256 or ES256/);
    await refused(`${unsigned}c2ln`, 'UNAUTHENTICATED', /unsigned \(alg 'none'\)/);
    await refused(`${b64({ alg: 'NONE', kid: github.kid })}.${b64(claims())}.c2ln`, 'UNAUTHENTICATED', /unsigned/);
  });

  it('refuses HS256 signed with the issuer public key (algorithm confusion)', async () => {
    const before = requests();
    await refused(github.signHs256WithPublicKey(claims()), 'UNAUTHENTICATED', /algorithm 'HS256' is symmetric and never accepted/);
    assert.deepEqual(requests(), before);
  });

  it('refuses other algorithms, and a token whose alg does not fit the key', async () => {
    await refused(await github.sign(claims(), { header: { alg: 'RS512' } }), 'UNAUTHENTICATED', /algorithm 'RS512' is not accepted; expected RS256 or ES256/);
    await refused(`${b64({ kid: github.kid })}.${b64(claims())}.c2ln`, 'UNAUTHENTICATED', /algorithm missing is not accepted/);
    // An RSA key used for an ES256 token: refused before jose is asked.
    const mixed = `${b64({ alg: 'ES256', kid: github.kid })}.${b64(claims())}.c2ln`;
    await refused(mixed, 'UNAUTHENTICATED', new RegExp(`key '${github.kid}' is for 'RS256', but the token says 'ES256'`));
  });

  it('refuses a token signed by a key the issuer does not publish, under a published kid', async () => {
    const token = await github.sign(claims(), { key: github.unpublishedKey() });
    await refused(token, 'UNAUTHENTICATED', new RegExp(`signature does not verify with key '${github.kid}' of ${github.url}`));
  });

  it('refuses expired and not-yet-valid tokens, allowing a small clock skew', async () => {
    const nowSec = Math.floor(clock.ms / 1000);
    await refused(await github.sign(claims({ iat: nowSec - 600, nbf: nowSec - 600, exp: nowSec - TOLERANCE_SEC - 1 })), 'UNAUTHENTICATED', /OIDC token expired at .*; it is now/);
    await refused(await github.sign(claims({ iat: nowSec, nbf: nowSec + TOLERANCE_SEC + 60, exp: nowSec + 600 })), 'UNAUTHENTICATED', /not valid before .*; it is now/);
    await verifier.verify(await github.sign(claims({ iat: nowSec - 600, nbf: nowSec - 600, exp: nowSec - TOLERANCE_SEC + 5 })), 'web', policies);
    await verifier.verify(await github.sign(claims({ nbf: nowSec + TOLERANCE_SEC - 5 })), 'web', policies);
    const { exp: _exp, ...noExpiry } = claims();
    await refused(await github.sign(noExpiry), 'UNAUTHENTICATED', /has no 'exp' claim; expected an expiry time/);
  });

  it('refuses a wrong or missing audience', async () => {
    await refused(await github.sign(claims({ aud: 'sts.amazonaws.com' })), 'UNAUTHENTICATED', /audience is 'sts\.amazonaws\.com', expected 'https:\/\/slipway\.example'/);
    const { aud: _aud, ...noAudience } = claims();
    await refused(await github.sign(noAudience), 'UNAUTHENTICATED', /has no 'aud' claim/);
  });

  it('refuses oversized tokens before reading them', async () => {
    const before = requests();
    const huge = await github.sign(claims({ padding: 'x'.repeat(20_000) }));
    await refused(huge, 'UNAUTHENTICATED', new RegExp(`OIDC token is ${huge.length} bytes, more than the 16384-byte limit`));
    assert.deepEqual(requests(), before);
  });

  it('refuses malformed tokens with a precise reason', async () => {
    const good = await github.sign(claims());
    const [h, p, s] = good.split('.') as [string, string, string];
    const cases: Array<[string, RegExp]> = [
      ['', /OIDC token is empty/],
      ['abc', /expected 3 dot-separated parts \(JWS compact form\), got 1/],
      [`${h}.${p}`, /got 2/],
      [`${h}.${p}.${s}.x`, /got 4/],
      [`${h}!.${p}.${s}`, /header is empty or not base64url/],
      [`${b64('not json')}.${p}.${s}`, /header is not JSON/],
      [`${b64([1])}.${p}.${s}`, /header is \[1\], expected a JSON object/],
      [`${h}.${b64('[]')}.${s}`, /payload is \[\], expected a JSON object/],
      [`${h}.${p}.${s}=`, /signature is missing or not base64url/],
      [`${b64({ alg: 'RS256' })}.${p}.${s}`, /header kid is missing/],
      // A payload swapped under a valid header and signature.
      [`${h}.${b64(claims({ repository: 'evil/web' }))}.${s}`, /signature does not verify/],
    ];
    for (const [token, message] of cases) await refused(token, 'UNAUTHENTICATED', message);
  });
});

describe('OidcVerifier: key discovery and rotation', () => {
  it('refetches the JWKS exactly once for an unknown kid, then refuses; a second unknown kid within the cooldown fetches nothing', async () => {
    await verifier.verify(await github.sign(claims()), 'web', policies); // Warm the cache.
    clock.ms += COOLDOWN_MS;
    const start = requests();
    const forged = github.unpublishedKey();
    await refused(await github.sign(claims(), { kid: 'unknown-1', key: forged }), 'UNAUTHENTICATED', /has no key with kid 'unknown-1'/);
    assert.equal(requests().github.jwks, start.github.jwks + 1);
    assert.equal(requests().github.discovery, start.github.discovery);

    clock.ms += COOLDOWN_MS / 2;
    await refused(await github.sign(claims(), { kid: 'unknown-2', key: forged }), 'UNAUTHENTICATED', /has no key with kid 'unknown-2'.*not fetched again for an unknown kid before/);
    assert.equal(requests().github.jwks, start.github.jwks + 1);
    // Known keys keep working from the cache meanwhile.
    await verifier.verify(await github.sign(claims()), 'web', policies);
    assert.equal(requests().github.jwks, start.github.jwks + 1);
  });

  it('follows the issuer rotating its key, without a restart', async () => {
    const oldKid = github.kid;
    await verifier.verify(await github.sign(claims()), 'web', policies);
    const oldToken = await github.sign(claims());
    const newKid = await github.rotate();
    assert.notEqual(newKid, oldKid);
    clock.ms += COOLDOWN_MS;
    const jwksBefore = github.requests.jwks;
    const identity = await verifier.verify(await github.sign(claims()), 'web', policies);
    assert.equal(identity.policyId, 'web-main');
    assert.equal(github.requests.jwks, jwksBefore + 1);
    // The retired key went with the refetch: tokens it signed are no longer accepted.
    await refused(oldToken, 'UNAUTHENTICATED', new RegExp(`has no key with kid '${oldKid}'`));
  });
});
