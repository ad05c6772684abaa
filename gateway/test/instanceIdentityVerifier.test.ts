// InstanceIdentityVerifier against documents signed with test "AWS regional certificates".
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../src/gatewayError.js';
import {
  InstanceIdentityVerifier,
  MAX_INSTANCE_DOCUMENT_HEADER_CHARS,
  MAX_INSTANCE_SIGNATURE_HEADER_CHARS,
  type InstanceIdentityVerifierOptions,
} from '../src/instanceIdentityVerifier.js';
import { identityDocument, makeSigningAuthority, signedHeaders, type SigningAuthority } from './support/instanceIdentityFixture.js';

let euWest: SigningAuthority;
let usEast: SigningAuthority;
let stranger: SigningAuthority;

before(async () => {
  [euWest, usEast, stranger] = await Promise.all([
    makeSigningAuthority('aws eu-west-1'),
    makeSigningAuthority('aws us-east-1'),
    makeSigningAuthority('not aws'),
  ]);
});

function verifier(overrides: Partial<InstanceIdentityVerifierOptions> = {}): InstanceIdentityVerifier {
  return new InstanceIdentityVerifier({
    certificates: { 'eu-west-1': euWest.certificatePem, 'us-east-1': [usEast.certificatePem] },
    allowedAccounts: ['123456789012'],
    ...overrides,
  });
}

function refusal(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
    return err;
  }
  return assert.fail('expected a refusal');
}

test('a genuine document is verified and its facts returned', () => {
  const { document, signature } = signedHeaders(identityDocument(), euWest);
  const identity = verifier().verify(document, signature);
  assert.equal(identity.instanceId, 'i-0123456789abcdef0');
  assert.equal(identity.accountId, '123456789012');
  assert.equal(identity.region, 'eu-west-1');
  assert.equal(identity.architecture, 'x86_64');
  assert.equal(identity.imageId, 'ami-0abcdef1234567890');
  assert.equal(identity.instanceType, 'c6id.xlarge');
  assert.equal(identity.availabilityZone, 'eu-west-1b');
  assert.equal(identity.pendingTime?.toISOString(), '2026-11-27T10:00:00.000Z');
  assert.match(identity.certificateFingerprint, /^[0-9a-f]{64}$/);
});

test('a document edited after signing is refused as forged', () => {
  const genuine = identityDocument();
  const { signature } = signedHeaders(genuine, euWest);
  const edited = Buffer.from(genuine.toString().replace('i-0123456789abcdef0', 'i-0fedcba9876543210'));
  const err = refusal(() => verifier().verify(edited.toString('base64'), signature));
  assert.equal(err.code, 'UNAUTHENTICATED');
  assert.match(err.message, /signature does not verify with the AWS certificate for eu-west-1: the document was altered after signing, or signed by a key that is not AWS's/);

  // Even a change that leaves the JSON meaning alone changes the bytes the signature covers.
  const reformatted = Buffer.from(JSON.stringify(JSON.parse(genuine.toString())));
  assert.equal(refusal(() => verifier().verify(reformatted.toString('base64'), signature)).code, 'UNAUTHENTICATED');
});

test('a document signed by a key that is not configured is refused', () => {
  const { document, signature } = signedHeaders(identityDocument(), stranger);
  const err = refusal(() => verifier().verify(document, signature));
  assert.equal(err.code, 'UNAUTHENTICATED');
  assert.match(err.message, /does not verify with the AWS certificate for eu-west-1/);
});

test("a document claiming one region but signed with another region's certificate is refused, naming both", () => {
  const { document, signature } = signedHeaders(identityDocument({ region: 'eu-west-1' }), usEast);
  const err = refusal(() => verifier().verify(document, signature));
  assert.equal(err.code, 'UNAUTHENTICATED');
  assert.match(err.message, /says region eu-west-1 but is signed with the certificate configured for us-east-1/);
});

test('a document from a region without a configured certificate is refused', () => {
  const { document, signature } = signedHeaders(identityDocument({ region: 'ap-south-1' }), stranger);
  const err = refusal(() => verifier().verify(document, signature));
  assert.match(err.message, /from region ap-south-1, for which no AWS certificate is configured \(configured: eu-west-1, us-east-1\)/);
});

test('regions that share a certificate, and a region in the middle of a rotation (two certificates), verify', () => {
  const shared = verifier({ certificates: { 'eu-west-1': euWest.certificatePem, 'eu-west-2': euWest.certificatePem } });
  const inLondon = signedHeaders(identityDocument({ region: 'eu-west-2' }), euWest);
  assert.equal(shared.verify(inLondon.document, inLondon.signature).region, 'eu-west-2');

  const rotating = verifier({ certificates: { 'eu-west-1': euWest.certificatePem + usEast.certificatePem } });
  const old = signedHeaders(identityDocument(), euWest);
  const renewed = signedHeaders(identityDocument(), usEast);
  const a = rotating.verify(old.document, old.signature);
  const b = rotating.verify(renewed.document, renewed.signature);
  assert.notEqual(a.certificateFingerprint, b.certificateFingerprint);
});

test('an account that is not allowed is forbidden', () => {
  const { document, signature } = signedHeaders(identityDocument({ accountId: '210987654321' }), euWest);
  const err = refusal(() => verifier().verify(document, signature));
  assert.equal(err.code, 'FORBIDDEN');
  assert.match(err.message, /instance i-0123456789abcdef0 runs in AWS account 210987654321, which is not one of the 1 accounts allowed to join/);
  assert.equal(verifier({ allowedAccounts: ['123456789012', '210987654321'] }).verify(document, signature).accountId, '210987654321');
});

test('headers over their size limits are refused before anything is decoded', () => {
  const { document, signature } = signedHeaders(identityDocument(), euWest);
  const big = 'A'.repeat(MAX_INSTANCE_DOCUMENT_HEADER_CHARS + 4);
  let err = refusal(() => verifier().verify(big, signature));
  assert.match(err.message, new RegExp(`slipway-instance-document is ${big.length} characters, more than the ${MAX_INSTANCE_DOCUMENT_HEADER_CHARS}-character limit`));
  err = refusal(() => verifier().verify(document, 'A'.repeat(MAX_INSTANCE_SIGNATURE_HEADER_CHARS + 4)));
  assert.match(err.message, /slipway-instance-signature is \d+ characters, more than the 1024-character limit/);
});

test('malformed headers and documents are refused with what is wrong', () => {
  const { document, signature } = signedHeaders(identityDocument(), euWest);
  assert.match(refusal(() => verifier().verify('not base64!', signature)).message, /slipway-instance-document is not base64/);
  assert.match(refusal(() => verifier().verify(document, '')).message, /slipway-instance-signature is empty/);

  const notJson = signedHeaders(Buffer.from('hello'), euWest);
  assert.match(refusal(() => verifier().verify(notJson.document, notJson.signature)).message, /document is not a JSON object \(5 bytes\)/);

  // Genuinely signed but not in the shape the gateway relies on.
  const noInstance = signedHeaders(identityDocument({ instanceId: undefined }), euWest);
  assert.match(refusal(() => verifier().verify(noInstance.document, noInstance.signature)).message, /document instanceId is missing, expected an instance id/);
  const noRegion = signedHeaders(identityDocument({ region: 'Mars\n1' }), euWest);
  assert.match(refusal(() => verifier().verify(noRegion.document, noRegion.signature)).message, /document region is 'Mars\?1', expected a region/);
});

test('settings are checked when the verifier is made, all problems at once', () => {
  let err = refusal(() => new InstanceIdentityVerifier({ certificates: {}, allowedAccounts: [] }));
  assert.equal(err.code, 'CONFIG_INVALID');
  assert.match(err.message, /no AWS instance identity certificates are configured/);
  assert.match(err.message, /no AWS accounts are allowed/);

  err = refusal(
    () =>
      new InstanceIdentityVerifier({
        certificates: { 'Europe': euWest.certificatePem, 'eu-west-1': 'not a pem', 'us-east-1': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' },
        allowedAccounts: ['12345', '123456789012'],
      }),
  );
  assert.match(err.message, /'Europe' is not an AWS region name/);
  assert.match(err.message, /the certificate for eu-west-1 holds no PEM certificate/);
  assert.match(err.message, /the certificate for us-east-1 cannot be read/);
  assert.match(err.message, /allowed account '12345' is not a 12-digit AWS account id/);
});

test('a certificate with a key that is not RSA is refused', async () => {
  const { createCa } = await import('../src/devPki.js');
  const ec = await createCa('ec test ca');
  const err = refusal(() => new InstanceIdentityVerifier({ certificates: { 'eu-west-1': ec.certPem }, allowedAccounts: ['123456789012'] }));
  assert.match(err.message, /the certificate for eu-west-1 has a ec key; AWS signs instance identity documents with RSA/);
});
