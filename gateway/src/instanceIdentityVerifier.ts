import { createHash, verify as verifySignature, X509Certificate, type KeyObject } from 'node:crypto';
import { Header } from '@slipway/proto';
import { GatewayError } from './gatewayError.js';

// Checks the EC2 instance identity an agent presents on its connect request: the document IMDS
// served on the instance, and AWS's RSA-SHA256 signature of it (the `signature` endpoint, base64),
// against AWS's per-region RSA certificates that the operator configured. Only AWS holds the
// signing keys, so a verified document proves which instance, account and region the agent runs
// in; whether that instance is one this fleet launched is AgentAdmission's question.

/** What a verified document says. Fields besides the first four are informational. */
export interface VerifiedInstanceIdentity {
  instanceId: string;
  accountId: string;
  region: string;
  /** `x86_64`, `arm64`, ... as EC2 names it. */
  architecture: string;
  imageId: string | undefined;
  instanceType: string | undefined;
  availabilityZone: string | undefined;
  /** When the instance last entered `pending` (launch or start). */
  pendingTime: Date | undefined;
  /** SHA-256 fingerprint (hex) of the configured certificate whose key verified the signature. */
  certificateFingerprint: string;
}

export interface InstanceIdentityVerifierOptions {
  /**
   * AWS's RSA certificates for instance identity signatures, by region: a PEM holding one
   * certificate or several (both the old and the new one while AWS rotates), or a list of PEMs.
   * Documents from regions not listed are refused, and a document is accepted only when a
   * certificate listed for its own region verifies it.
   */
  certificates: Readonly<Record<string, string | readonly string[]>>;
  /** 12-digit AWS account ids whose instances may join. */
  allowedAccounts: readonly string[];
}

// A document is about 500 bytes and an RSA-2048 signature 344 base64 characters; the limits leave
// room for growth (and RSA-4096) while keeping a hostile header from costing anything to refuse.
export const MAX_INSTANCE_DOCUMENT_HEADER_CHARS = 8192;
export const MAX_INSTANCE_SIGNATURE_HEADER_CHARS = 1024;

const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const ACCOUNT_ID = /^\d{12}$/;
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
const ARCHITECTURE = /^[a-z0-9_]{1,32}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

interface TrustedKey {
  fingerprint: string;
  key: KeyObject;
  /** Regions this certificate was configured for. */
  regions: string[];
}

export class InstanceIdentityVerifier {
  // One entry per distinct certificate: many regions share one, and each is tried once.
  readonly #keys: TrustedKey[] = [];
  readonly #byRegion = new Map<string, TrustedKey[]>();
  readonly #allowedAccounts: ReadonlySet<string>;

  constructor(options: InstanceIdentityVerifierOptions) {
    const problems: string[] = [];
    const byFingerprint = new Map<string, TrustedKey>();
    const regions = Object.entries(options.certificates ?? {});
    if (regions.length === 0) problems.push('no AWS instance identity certificates are configured; give at least one region with its RSA certificate');
    for (const [region, pems] of regions) {
      if (!REGION.test(region)) {
        problems.push(`'${region.slice(0, 64)}' is not an AWS region name such as us-east-1`);
        continue;
      }
      const texts = typeof pems === 'string' ? [pems] : [...pems];
      const blocks = texts.flatMap((text) => String(text).match(PEM_CERTIFICATE) ?? []);
      if (blocks.length === 0) {
        problems.push(`the certificate for ${region} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
        continue;
      }
      const keys: TrustedKey[] = [];
      blocks.forEach((block, index) => {
        const name = blocks.length > 1 ? `certificate #${index + 1} for ${region}` : `the certificate for ${region}`;
        let cert: X509Certificate;
        try {
          cert = new X509Certificate(block);
        } catch (err) {
          problems.push(`${name} cannot be read: ${(err as Error).message}`);
          return;
        }
        if (cert.publicKey.asymmetricKeyType !== 'rsa') {
          problems.push(`${name} has a ${cert.publicKey.asymmetricKeyType ?? 'unknown'} key; AWS signs instance identity documents with RSA (use the region's RSA certificate)`);
          return;
        }
        const fingerprint = createHash('sha256').update(cert.raw).digest('hex');
        let trusted = byFingerprint.get(fingerprint);
        if (trusted === undefined) {
          trusted = { fingerprint, key: cert.publicKey, regions: [] };
          byFingerprint.set(fingerprint, trusted);
          this.#keys.push(trusted);
        }
        if (!trusted.regions.includes(region)) trusted.regions.push(region);
        keys.push(trusted);
      });
      this.#byRegion.set(region, keys);
    }
    const accounts = [...(options.allowedAccounts ?? [])];
    if (accounts.length === 0) problems.push('no AWS accounts are allowed; list the 12-digit account ids whose instances may join');
    for (const account of accounts) {
      if (!ACCOUNT_ID.test(account)) problems.push(`allowed account '${String(account).slice(0, 64)}' is not a 12-digit AWS account id`);
    }
    if (problems.length > 0) {
      throw new GatewayError('CONFIG_INVALID', `invalid instance identity verification settings:\n  - ${problems.join('\n  - ')}`);
    }
    this.#allowedAccounts = new Set(accounts);
  }

  /** Regions whose documents can be verified. */
  get regions(): string[] {
    return [...this.#byRegion.keys()];
  }

  /**
   * Verifies the two header values (`slipway-instance-document`: base64 of the document bytes,
   * `slipway-instance-signature`: AWS's base64 signature). Throws UNAUTHENTICATED when the document
   * is malformed or not genuinely AWS's for its region, FORBIDDEN when its account is not allowed.
   */
  verify(documentHeader: string, signatureHeader: string): VerifiedInstanceIdentity {
    const documentBytes = decodeHeader(documentHeader, Header.instanceDocument, MAX_INSTANCE_DOCUMENT_HEADER_CHARS);
    const signature = decodeHeader(signatureHeader, Header.instanceSignature, MAX_INSTANCE_SIGNATURE_HEADER_CHARS);

    // Parsed before it is trusted only to learn which region's certificate must have signed it.
    let fields: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(documentBytes.toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      fields = parsed as Record<string, unknown>;
    } catch {
      throw unauthenticated(`instance identity document is not a JSON object (${documentBytes.length} bytes)`);
    }
    const region = fields['region'];
    if (typeof region !== 'string' || !REGION.test(region)) {
      throw unauthenticated(`instance identity document region is ${show(region)}, expected a region such as us-east-1`);
    }

    const regionKeys = this.#byRegion.get(region) ?? [];
    const verifiedBy = regionKeys.find((trusted) => signedBy(documentBytes, signature, trusted.key));
    if (verifiedBy === undefined) {
      // Which configured certificate (if any) did sign it turns "forged" into a precise answer.
      const other = this.#keys.find((trusted) => !regionKeys.includes(trusted) && signedBy(documentBytes, signature, trusted.key));
      if (other !== undefined) {
        throw unauthenticated(
          `instance identity document says region ${region} but is signed with the certificate configured for ${other.regions.join(', ')}; ` +
            `only ${region}'s certificate may vouch for an instance in ${region}`,
        );
      }
      if (regionKeys.length === 0) {
        throw unauthenticated(`instance identity document is from region ${region}, for which no AWS certificate is configured (configured: ${this.regions.join(', ')})`);
      }
      throw unauthenticated(
        `instance identity document signature does not verify with the AWS certificate for ${region}: ` +
          'the document was altered after signing, or signed by a key that is not AWS\'s',
      );
    }

    const instanceId = requireField(fields, 'instanceId', INSTANCE_ID, 'an instance id such as i-0123456789abcdef0');
    const accountId = requireField(fields, 'accountId', ACCOUNT_ID, 'a 12-digit AWS account id');
    const architecture = requireField(fields, 'architecture', ARCHITECTURE, 'an architecture such as x86_64 or arm64');
    if (!this.#allowedAccounts.has(accountId)) {
      throw new GatewayError('FORBIDDEN', `instance ${instanceId} runs in AWS account ${accountId}, which is not one of the ${this.#allowedAccounts.size} accounts allowed to join`);
    }
    const pendingTime = optionalString(fields, 'pendingTime');
    const pendingDate = pendingTime === undefined ? undefined : new Date(pendingTime);
    return {
      instanceId,
      accountId,
      region,
      architecture,
      imageId: optionalString(fields, 'imageId'),
      instanceType: optionalString(fields, 'instanceType'),
      availabilityZone: optionalString(fields, 'availabilityZone'),
      pendingTime: pendingDate !== undefined && Number.isFinite(pendingDate.getTime()) ? pendingDate : undefined,
      certificateFingerprint: verifiedBy.fingerprint,
    };
  }
}

function decodeHeader(value: string, name: string, maxChars: number): Buffer {
  if (typeof value !== 'string' || value === '') throw unauthenticated(`header ${name} is empty`);
  // Checked first so that a huge header costs nothing to refuse.
  if (value.length > maxChars) throw unauthenticated(`header ${name} is ${value.length} characters, more than the ${maxChars}-character limit`);
  if (value.length % 4 !== 0 || !BASE64.test(value)) throw unauthenticated(`header ${name} is not base64`);
  return Buffer.from(value, 'base64');
}

// OpenSSL reports some malformed signatures (a wrong length) as errors rather than as a mismatch.
function signedBy(document: Buffer, signature: Buffer, key: KeyObject): boolean {
  try {
    return verifySignature('sha256', document, key, signature);
  } catch {
    return false;
  }
}

function requireField(fields: Record<string, unknown>, name: string, pattern: RegExp, expected: string): string {
  const value = fields[name];
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw unauthenticated(`instance identity document ${name} is ${show(value)}, expected ${expected}`);
  }
  return value;
}

function optionalString(fields: Record<string, unknown>, name: string): string | undefined {
  const value = fields[name];
  return typeof value === 'string' && value.length <= 256 ? value : undefined;
}

function unauthenticated(message: string): GatewayError {
  return new GatewayError('UNAUTHENTICATED', message);
}

// Values from an unverified document end up in messages and logs: bounded, control characters out.
function show(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = (typeof value === 'string' ? `'${value}'` : (JSON.stringify(value) ?? String(value))).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
