// Stand-ins for AWS's instance identity signing: an RSA key with a self-signed certificate per
// "region", and documents in the shape IMDS serves them, signed the way AWS signs them
// (RSA-SHA256 over the exact bytes, base64).
import { generateKeyPairSync, sign, webcrypto, type KeyObject } from 'node:crypto';
import type * as X509 from '@peculiar/x509';

export interface SigningAuthority {
  certificatePem: string;
  privateKey: KeyObject;
}

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

let x509Loaded: Promise<typeof X509> | undefined;
// @peculiar/x509 needs the Reflect metadata polyfill loaded before it (as in devPki.ts).
function loadX509(): Promise<typeof X509> {
  x509Loaded ??= (async () => {
    await import('reflect-metadata');
    return await import('@peculiar/x509');
  })();
  return x509Loaded;
}

/** A fresh RSA-2048 key and a self-signed certificate for it, like one of AWS's regional certificates. */
export async function makeSigningAuthority(commonName: string): Promise<SigningAuthority> {
  const x509 = await loadX509();
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keys = {
    privateKey: await webcrypto.subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), RSA, false, ['sign']),
    publicKey: await webcrypto.subtle.importKey('spki', publicKey.export({ type: 'spki', format: 'der' }), RSA, true, ['verify']),
  };
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${commonName}, O=Slipway test`,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + DAY_MS),
    signingAlgorithm: RSA,
    keys,
  });
  return { certificatePem: cert.toString('pem') + '\n', privateKey };
}

export interface DocumentFields {
  instanceId: string;
  accountId: string;
  region: string;
  architecture: string;
  [field: string]: unknown;
}

/** A document in IMDS's layout (pretty-printed, `key : value`), which is what gets signed. */
export function identityDocument(fields: Partial<DocumentFields> = {}): Buffer {
  const all: Record<string, unknown> = {
    accountId: '123456789012',
    architecture: 'x86_64',
    availabilityZone: 'eu-west-1b',
    billingProducts: null,
    imageId: 'ami-0abcdef1234567890',
    instanceId: 'i-0123456789abcdef0',
    instanceType: 'c6id.xlarge',
    pendingTime: '2026-11-27T10:00:00Z',
    privateIp: '10.0.1.17',
    region: 'eu-west-1',
    version: '2017-09-30',
    ...fields,
  };
  // A field given as undefined is left out.
  const lines = Object.entries(all).filter(([, value]) => value !== undefined).map(([key, value]) => `  "${key}" : ${JSON.stringify(value)}`);
  return Buffer.from(`{\n${lines.join(',\n')}\n}`);
}

/** The header pair an agent sends: base64 of the document bytes and the base64 signature. */
export function signedHeaders(document: Buffer, authority: SigningAuthority): { document: string; signature: string } {
  return { document: document.toString('base64'), signature: sign('sha256', document, authority.privateKey).toString('base64') };
}
