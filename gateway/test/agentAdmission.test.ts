// AgentAdmission: join token (real TokenIssuer/TokenVerifier) + signed instance identity document
// (test RSA certificate) + the fleet's record of the instance.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import type { Platform } from '@slipway/proto';
import { AgentAdmission, type AgentAdmissionOptions, type FleetInstanceFacts } from '../src/agentAdmission.js';
import { GatewayError } from '../src/gatewayError.js';
import { InstanceIdentityVerifier } from '../src/instanceIdentityVerifier.js';
import { generateSigningKey, TokenIssuer } from '../src/tokenIssuer.js';
import { TokenVerifier, type AgentIdentity } from '../src/tokenVerifier.js';
import { identityDocument, makeSigningAuthority, signedHeaders, type DocumentFields, type SigningAuthority } from './support/instanceIdentityFixture.js';

const INSTANCE = 'i-0123456789abcdef0';
const ARM_INSTANCE = 'i-0aaaabbbbccccdddd';
const POOL_INSTANCE = 'i-0eeeeffff00001111';

let aws: SigningAuthority;
let stranger: SigningAuthority;
let verifier: InstanceIdentityVerifier;
const signingKey = generateSigningKey('test-key');
const issuer = new TokenIssuer({ issuer: 'slipway-test', privateJwk: signingKey.privateJwk });
const tokens = new TokenVerifier({ issuer: 'slipway-test', keys: [signingKey.publicJwk] });

// The fleet as the wiring will present it: what it launched, for which project.
const FLEET: Record<string, FleetInstanceFacts> = {
  [INSTANCE]: { fleet: 'builders', platform: 'linux/amd64', project: 'web', state: 'running', region: 'eu-west-1' },
  [ARM_INSTANCE]: { fleet: 'builders', platform: 'linux/arm64', project: 'web', state: 'pending' },
  [POOL_INSTANCE]: { fleet: 'builders', platform: 'linux/amd64', project: undefined, state: 'running' },
  'i-0999999999999999a': { fleet: 'other-fleet', platform: 'linux/amd64', project: 'api', state: 'running' },
  'i-0dead00000000000d': { fleet: 'builders', platform: 'linux/amd64', project: 'web', state: 'terminated' },
  'i-0ca11fe000000000c': { fleet: 'builders', platform: 'linux/amd64', project: 'web', state: 'running', region: 'us-east-1' },
  'i-0acc0000000000001': { fleet: 'builders', platform: 'linux/amd64', project: 'web', state: 'running', accountId: '111111111111' },
};

before(async () => {
  [aws, stranger] = await Promise.all([makeSigningAuthority('aws eu-west-1'), makeSigningAuthority('not aws')]);
  verifier = new InstanceIdentityVerifier({ certificates: { 'eu-west-1': aws.certificatePem }, allowedAccounts: ['123456789012', '111111111111'] });
});

function admission(overrides: Partial<AgentAdmissionOptions> = {}): AgentAdmission {
  return new AgentAdmission({
    verifier,
    // Asynchronous, as a routing table lookup is.
    lookupInstance: async (instanceId) => FLEET[instanceId],
    requireInstanceIdentity: true,
    ...overrides,
  });
}

async function joinToken(agentId: string, fleet = 'builders'): Promise<AgentIdentity> {
  return tokens.verifyAgent(await issuer.issueAgentToken({ agentId, fleet, ttlSec: 600 }));
}

interface Attempt {
  agentId?: string;
  fleet?: string;
  platform?: Platform;
  document?: Partial<DocumentFields>;
  signer?: SigningAuthority;
}

async function attempt(admit: AgentAdmission, a: Attempt = {}): ReturnType<AgentAdmission['admit']> {
  const instanceId = a.document?.instanceId ?? INSTANCE;
  const headers = signedHeaders(identityDocument({ instanceId, ...a.document }), a.signer ?? aws);
  return admit.admit({
    token: await joinToken(a.agentId ?? instanceId, a.fleet),
    platform: a.platform ?? 'linux/amd64',
    instanceDocument: headers.document,
    instanceSignature: headers.signature,
  });
}

async function refused(promise: Promise<unknown>, code: GatewayError['code'], message: RegExp): Promise<void> {
  const err = await promise.then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
}

test('a genuine agent is admitted as the instance the fleet launched, for its project', async () => {
  const admitted = await attempt(admission());
  assert.equal(admitted.agentId, INSTANCE);
  assert.equal(admitted.fleet, 'builders');
  assert.equal(admitted.instanceId, INSTANCE);
  assert.equal(admitted.project, 'web');
  assert.equal(admitted.instance?.accountId, '123456789012');

  const arm = await attempt(admission(), { platform: 'linux/arm64', document: { instanceId: ARM_INSTANCE, architecture: 'arm64' } });
  assert.equal(arm.instanceId, ARM_INSTANCE);

  const pool = await attempt(admission(), { document: { instanceId: POOL_INSTANCE } });
  assert.equal(pool.project, undefined, 'a pool instance belongs to no project yet');
  assert.equal('project' in pool, false);
});

test('a forged document (edited after signing) is refused', async () => {
  const genuine = identityDocument();
  const { signature } = signedHeaders(genuine, aws);
  // Moved into another account's fleet by editing the bytes the signature covers.
  const forged = Buffer.from(genuine.toString().replace('"123456789012"', '"111111111111"'));
  await refused(
    admission().admit({ token: await joinToken(INSTANCE), platform: 'linux/amd64', instanceDocument: forged.toString('base64'), instanceSignature: signature }),
    'UNAUTHENTICATED',
    /signature does not verify with the AWS certificate for eu-west-1: the document was altered after signing/,
  );
});

test('a document signed by another key is refused', async () => {
  await refused(attempt(admission(), { signer: stranger }), 'UNAUTHENTICATED', /does not verify with the AWS certificate for eu-west-1/);
});

test('an agent id that is not the instance id is refused', async () => {
  await refused(
    attempt(admission(), { agentId: 'builder-7' }),
    'FORBIDDEN',
    new RegExp(`join token is for agent 'builder-7' but the instance identity document is for instance ${INSTANCE}`),
  );
  // Another fleet instance's token with this instance's document: still not this agent.
  await refused(attempt(admission(), { agentId: POOL_INSTANCE }), 'FORBIDDEN', new RegExp(`is for agent '${POOL_INSTANCE}' but .* for instance ${INSTANCE}`));
});

test('an instance the fleet did not launch is refused', async () => {
  await refused(
    attempt(admission(), { document: { instanceId: 'i-0123123123123123a' } }),
    'FORBIDDEN',
    /instance i-0123123123123123a \(account 123456789012, eu-west-1\) is not an instance this fleet launched/,
  );
});

test("another fleet's instance is refused", async () => {
  await refused(
    attempt(admission(), { document: { instanceId: 'i-0999999999999999a' } }),
    'FORBIDDEN',
    /instance i-0999999999999999a belongs to fleet other-fleet, not to fleet builders named by the join token/,
  );
  // A token for the other fleet and its instance is fine with that fleet's record.
  const other = await attempt(admission(), { fleet: 'other-fleet', document: { instanceId: 'i-0999999999999999a' } });
  assert.equal(other.fleet, 'other-fleet');
});

test('a terminated instance cannot join', async () => {
  await refused(attempt(admission(), { document: { instanceId: 'i-0dead00000000000d' } }), 'FORBIDDEN', /instance i-0dead00000000000d is terminated; it cannot join/);
});

test('architecture and platform must agree: announced, in the document, and as launched', async () => {
  // An x86_64 instance announcing arm64.
  await refused(attempt(admission(), { platform: 'linux/arm64' }), 'FORBIDDEN', new RegExp(`announced linux/arm64 but instance ${INSTANCE} is x86_64 \\(linux/amd64\\)`));
  // The fleet launched an arm64 builder; the document says x86_64 (and the agent follows the document).
  await refused(
    attempt(admission(), { document: { instanceId: ARM_INSTANCE, architecture: 'x86_64' } }),
    'FORBIDDEN',
    new RegExp(`fleet launched instance ${ARM_INSTANCE} as a linux/arm64 builder but it is x86_64 \\(linux/amd64\\)`),
  );
  await refused(attempt(admission(), { document: { architecture: 'i386' } }), 'FORBIDDEN', /is i386; builders are x86_64 \(linux\/amd64\) or arm64 \(linux\/arm64\)/);
});

test('an account that is not allowed is refused, and so is one the fleet did not launch the instance in', async () => {
  await refused(attempt(admission(), { document: { accountId: '999999999999' } }), 'FORBIDDEN', /runs in AWS account 999999999999, which is not one of the 2 accounts allowed to join/);
  await refused(
    attempt(admission(), { document: { instanceId: 'i-0acc0000000000001' } }),
    'FORBIDDEN',
    /fleet launched instance i-0acc0000000000001 in account 111111111111 but its identity document says 123456789012/,
  );
});

test('a region other than the one the fleet launched the instance in is refused', async () => {
  await refused(
    attempt(admission(), { document: { instanceId: 'i-0ca11fe000000000c' } }),
    'FORBIDDEN',
    /fleet launched instance i-0ca11fe000000000c in us-east-1 but its identity document says eu-west-1/,
  );
});

test('a join token past its expiry is refused: by the token verifier, and by admission for a result kept too long', async () => {
  // Issued two hours ago for ten minutes: reusing it now fails.
  const stale = await issuer.issueAgentToken({ agentId: INSTANCE, fleet: 'builders', ttlSec: 600, issuedAt: new Date(Date.now() - 2 * 3600_000) });
  await refused(tokens.verifyAgent(stale), 'UNAUTHENTICATED', /token expired at .*; it is now/);

  const token = await joinToken(INSTANCE);
  const later = admission({ now: () => token.expiresAt.getTime() + 31_000 });
  const headers = signedHeaders(identityDocument(), aws);
  await refused(
    later.admit({ token, platform: 'linux/amd64', instanceDocument: headers.document, instanceSignature: headers.signature }),
    'UNAUTHENTICATED',
    new RegExp(`join token expired at ${token.expiresAt.toISOString().replace(/\./g, '\\.')}`),
  );
  // Within the verifier's clock allowance it still counts.
  const justAfter = admission({ now: () => token.expiresAt.getTime() + 1_000 });
  assert.equal((await justAfter.admit({ token, platform: 'linux/amd64', instanceDocument: headers.document, instanceSignature: headers.signature })).instanceId, INSTANCE);
});

test('without a document: refused when the fleet requires one, admitted on the token alone when it does not', async () => {
  const token = await joinToken(INSTANCE);
  const request = { token, platform: 'linux/amd64' as const, instanceDocument: undefined, instanceSignature: undefined };
  await refused(admission().admit(request), 'UNAUTHENTICATED', /presented no instance identity \(slipway-instance-document\); this fleet admits only agents that prove their EC2 instance/);

  const lenient = admission({ requireInstanceIdentity: false });
  assert.deepEqual(await lenient.admit(request), { agentId: INSTANCE, fleet: 'builders' });
  // A document, when sent, is checked all the same.
  await refused(attempt(lenient, { signer: stranger }), 'UNAUTHENTICATED', /does not verify/);
});

test('half an identity, or an identity the gateway cannot verify, is refused', async () => {
  const token = await joinToken(INSTANCE);
  const { document, signature } = signedHeaders(identityDocument(), aws);
  await refused(
    admission().admit({ token, platform: 'linux/amd64', instanceDocument: document, instanceSignature: undefined }),
    'UNAUTHENTICATED',
    /sent slipway-instance-document without slipway-instance-signature/,
  );
  await refused(
    admission({ verifier: undefined, requireInstanceIdentity: false }).admit({ token, platform: 'linux/amd64', instanceDocument: document, instanceSignature: signature }),
    'UNAUTHENTICATED',
    /presented an instance identity, but this gateway has no AWS certificates configured to verify it/,
  );
});

test('requiring an identity without certificates to verify it is a configuration error', () => {
  assert.throws(
    () => admission({ verifier: undefined, requireInstanceIdentity: true }),
    (err: unknown) => err instanceof GatewayError && err.code === 'CONFIG_INVALID' && /no AWS certificates are configured/.test(err.message),
  );
});
