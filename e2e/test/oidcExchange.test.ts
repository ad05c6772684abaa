// OIDC from CI through the real gateway: a project trusts GitHub-shaped identities of one
// repository; a matching CI token is exchanged for a short-lived project token that builds, and
// everything else is refused with the mismatch named. The issuer is a local HTTPS server serving
// discovery and JWKS, and rotating its key is followed without a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestIssuer } from '@slipway/gateway/test-support';
import { startStack, startEchoServer, gatewayApi, type SlipwayStack, type EchoServer } from '@slipway/e2e';

let stack: SlipwayStack;
let echo: EchoServer;
let github: TestIssuer;
let other: TestIssuer;

before(async () => {
  echo = await startEchoServer();
  // The issuers' HTTPS is signed by a CA the gateway is told to trust for OIDC only.
  const probe = await startStack();
  const pki = probe.pki;
  await probe.gateway.close(0);
  github = await TestIssuer.start({ certPem: pki.unrelatedServer.certPem, keyPem: pki.unrelatedServer.keyPem });
  other = await TestIssuer.start({ certPem: pki.unrelatedServer.certPem, keyPem: pki.unrelatedServer.keyPem });
  stack = await startStack({ pki, identity: true, oidcCa: pki.unrelatedCa.certPem, oidcUnknownKidCooldownMs: 3_000 });
  await stack.startAgent({ agentId: 'web-builder', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
  const admin = await stack.adminToken();
  assert.equal((await gatewayApi(stack, 'POST', '/v1/admin/projects', admin, { name: 'web' })).status, 201);
  const policy = await gatewayApi(stack, 'POST', '/v1/admin/projects/web/trust', admin, {
    id: 'github-main',
    issuer: github.url,
    audience: 'slipway',
    conditions: { repository: 'acme/web', ref: 'refs/heads/*' },
  });
  assert.equal(policy.status, 201, JSON.stringify(policy.body));
});

after(async () => {
  await stack.close();
  await echo.close();
  await github.close();
  await other.close();
});

async function exchange(token: string, project = 'web'): Promise<{ status: number; body: Record<string, unknown> }> {
  return gatewayApi(stack, 'POST', '/v1/oidc/exchange', undefined, { project, token });
}

test('a GitHub token from the trusted repository gets a short-lived project token that builds', async () => {
  const answer = await exchange(await github.sign(github.githubClaims('slipway')));
  assert.equal(answer.status, 201, JSON.stringify(answer.body));
  assert.equal(answer.body['project'], 'web');
  assert.equal(answer.body['trusted'], true);
  const expiresInMs = Date.parse(String(answer.body['expiresAt'])) - Date.now();
  assert.ok(expiresInMs > 0 && expiresInMs <= 16 * 60_000, 'short-lived');
  // The exchanged token is a project token: it creates a build that gets the project's builder.
  const created = await gatewayApi<{ buildId: string; token: string }>(stack, 'POST', '/v1/builds', String(answer.body['token']), { platforms: ['linux/amd64'] });
  assert.equal(created.status, 201);
  const acquired = await gatewayApi<{ state: string; builder: { agentId: string } }>(stack, 'POST', `/v1/builds/${created.body.buildId}/acquire`, created.body.token, {
    platform: 'linux/amd64',
  });
  assert.equal(acquired.body.state, 'active');
  assert.equal(acquired.body.builder.agentId, 'web-builder');
});

test('another repository, another issuer, or a mismatched claim get nothing, the mismatch named', async () => {
  const otherRepo = await exchange(await github.sign(github.githubClaims('slipway', { repository: 'evil/web', sub: 'repo:evil/web:ref:refs/heads/main' })));
  assert.equal(otherRepo.status, 403);
  assert.match(JSON.stringify(otherRepo.body), /repository/);
  const otherIssuer = await exchange(await other.sign(other.githubClaims('slipway')));
  assert.ok([401, 403].includes(otherIssuer.status), `refused: ${JSON.stringify(otherIssuer.body)}`);
  assert.equal(other.requests.discovery, 0, 'an issuer no policy names is never fetched');
  const tag = await exchange(await github.sign(github.githubClaims('slipway', { ref: 'refs/tags/v1' })));
  assert.equal(tag.status, 403);
  assert.match(JSON.stringify(tag.body), /ref/);
  const audience = await exchange(await github.sign(github.githubClaims('someone-else')));
  assert.equal(audience.status, 401);
  const unknownProject = await exchange(await github.sign(github.githubClaims('slipway')), 'nobody');
  assert.equal(unknownProject.status, 403);
});

test('bad CI tokens are refused: alg none, HS256 with the public key, expired, unknown kid (one refetch, then the cooldown)', async () => {
  const claims = github.githubClaims('slipway');
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', kid: github.kid })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
  assert.equal((await exchange(none)).status, 401);
  assert.equal((await exchange(github.signHs256WithPublicKey(claims))).status, 401);
  const expired = github.githubClaims('slipway', {}, Date.now() - 3_600_000);
  assert.equal((await exchange(await github.sign(expired))).status, 401);
  // The cooldown counts from the issuer's last fetch of any kind: let it pass first.
  await new Promise((r) => setTimeout(r, 3_200));
  const before = github.requests.jwks;
  assert.equal((await exchange(await github.sign(claims, { kid: 'not-published-1', key: github.unpublishedKey() }))).status, 401);
  assert.equal(github.requests.jwks, before + 1, 'one JWKS refetch for an unknown kid');
  assert.equal((await exchange(await github.sign(claims, { kid: 'not-published-2', key: github.unpublishedKey() }))).status, 401);
  assert.equal(github.requests.jwks, before + 1, 'no second refetch within the cooldown');
});

test('the issuer rotating its key is followed without a restart', async () => {
  const before = await exchange(await github.sign(github.githubClaims('slipway')));
  assert.equal(before.status, 201);
  await github.rotate();
  // The new kid is unknown to the gateway's cache. The cooldown of the previous test may still
  // run: a refetch is allowed once it has passed; until then the new key cannot be known.
  const deadline = Date.now() + 30_000;
  let after = await exchange(await github.sign(github.githubClaims('slipway')));
  while (after.status !== 201 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1_000));
    after = await exchange(await github.sign(github.githubClaims('slipway')));
  }
  assert.equal(after.status, 201, JSON.stringify(after.body));
});
