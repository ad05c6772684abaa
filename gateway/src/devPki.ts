// Development PKI: a local CA, a TLS server certificate for this machine, and a token signing key,
// so `npm start` and the tests run over real TLS with real tokens and no external tooling.
// Lives in the gateway package (not deploy/) because the gateway owns the X.509 dependency and
// tests of every package import it from here.
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname as osHostname, tmpdir } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type * as X509 from '@peculiar/x509';
import { GatewayError } from './gatewayError.js';
import { generateSigningKey, TokenIssuer, type SigningKeyPair } from './tokenIssuer.js';

export const DEV_PKI_FILES = {
  caCert: 'ca.pem',
  caKey: 'ca.key.pem',
  serverCert: 'server.pem',
  serverKey: 'server.key.pem',
  /** Public token verification keys (JWKS), for the gateway. */
  jwks: 'jwks.json',
  /** The token signing key (JWKS with one private key), for the dev launcher's TokenIssuer. */
  jwksPrivate: 'jwks.private.json',
} as const;

const DAY_MS = 24 * 60 * 60 * 1000;
const CA_LIFETIME_DAYS = 365;
const SERVER_LIFETIME_DAYS = 90;
/** Anything expiring sooner than this is replaced rather than reused. */
const MIN_REMAINING_DAYS = 7;
// Backdating absorbs small clock differences between the machine that issues and the one that checks.
const BACKDATE_MS = 5 * 60 * 1000;
const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface DevPki {
  dir: string;
  caCertPath: string;
  caKeyPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  jwksPath: string;
  jwksPrivatePath: string;
  caCertPem: string;
  caKeyPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  /** Names and addresses the server certificate is valid for. */
  serverNames: string[];
  /** ES256 token signing key (`privateJwk` for a TokenIssuer, `publicJwk` for a TokenVerifier). */
  signingKey: SigningKeyPair;
  /** Which parts were created by this call (the rest were reused from `dir`). */
  created: { ca: boolean; server: boolean; signingKey: boolean };
}

export interface EnsureDevPkiOptions {
  /** Reference time for validity checks and new certificates. Default now (tests move it). */
  now?: Date;
  /** Host name to include in the server certificate. Default `os.hostname()`. */
  hostname?: string;
}

export interface TestPki extends DevPki {
  /** A CA that has nothing to do with `caCertPem`, for "wrong CA" tests. */
  unrelatedCa: PemPair;
  /** A server certificate for the same names, issued by `unrelatedCa`. */
  unrelatedServer: PemPair;
  /** Removes the temporary directory. */
  cleanup(): Promise<void>;
}

/**
 * Creates the development PKI in `dir`, or reuses what is there while it stays valid for more than
 * 7 days: a CA (EC P-256, 1 year), a server certificate it signed for localhost, 127.0.0.1, ::1 and
 * this host's name (90 days), and an ES256 token signing key. Private keys are written mode 0600.
 * Not safe against two processes creating the same directory at the same moment.
 */
export async function ensureDevPki(dir: string, options: EnsureDevPkiOptions = {}): Promise<DevPki> {
  const now = options.now ?? new Date();
  const serverNames = serverNamesFor(options.hostname ?? osHostname());
  const paths = {
    caCertPath: join(dir, DEV_PKI_FILES.caCert),
    caKeyPath: join(dir, DEV_PKI_FILES.caKey),
    serverCertPath: join(dir, DEV_PKI_FILES.serverCert),
    serverKeyPath: join(dir, DEV_PKI_FILES.serverKey),
    jwksPath: join(dir, DEV_PKI_FILES.jwks),
    jwksPrivatePath: join(dir, DEV_PKI_FILES.jwksPrivate),
  };
  await mkdir(dir, { recursive: true, mode: 0o700 });

  let ca = await reusableCa(paths.caCertPath, paths.caKeyPath, now);
  const createdCa = ca === undefined;
  if (ca === undefined) {
    ca = await createCa(`Slipway development CA (${serverNames[serverNames.length - 1]})`, now);
    await writeAtomic(paths.caKeyPath, ca.keyPem, 0o600);
    await writeAtomic(paths.caCertPath, ca.certPem, 0o644);
  }

  let server = createdCa ? undefined : await reusableServer(paths.serverCertPath, paths.serverKeyPath, ca, serverNames, now);
  const createdServer = server === undefined;
  if (server === undefined) {
    server = await issueServerCertificate(ca, serverNames, now);
    await writeAtomic(paths.serverKeyPath, server.keyPem, 0o600);
    await writeAtomic(paths.serverCertPath, server.certPem, 0o644);
  }

  let signingKey = await reusableSigningKey(paths.jwksPrivatePath);
  const createdSigningKey = signingKey === undefined;
  if (signingKey === undefined) {
    signingKey = generateSigningKey(`dev-${randomBytes(4).toString('hex')}`);
    await writeAtomic(paths.jwksPrivatePath, jwksText(signingKey.privateJwk), 0o600);
  }
  // Always derived from the private key, so the two files cannot drift apart.
  const publicText = jwksText(signingKey.publicJwk);
  if ((await readIfPresent(paths.jwksPath)) !== publicText) await writeAtomic(paths.jwksPath, publicText, 0o644);

  return {
    dir,
    ...paths,
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    serverCertPem: server.certPem,
    serverKeyPem: server.keyPem,
    serverNames,
    signingKey,
    created: { ca: createdCa, server: createdServer, signingKey: createdSigningKey },
  };
}

/**
 * A fresh development PKI in a temporary directory, plus an unrelated second CA (and a server
 * certificate from it) for tests that need a certificate the dev CA does not vouch for.
 */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'slipway-pki-'));
  try {
    const pki = await ensureDevPki(dir);
    const now = new Date();
    const unrelatedCa = await createCa('Unrelated test CA', now);
    const unrelatedServer = await issueServerCertificate(unrelatedCa, pki.serverNames, now);
    return {
      ...pki,
      unrelatedCa,
      unrelatedServer,
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Creates a self-signed EC P-256 CA valid for one year from `now`. */
export async function createCa(commonName: string, now: Date = new Date()): Promise<PemPair> {
  const x509 = await loadX509();
  const keys = await webcrypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [commonName] }, { O: ['Slipway development'] }],
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + CA_LIFETIME_DAYS * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      // pathLength 0: this CA signs leaf certificates only.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await pkcs8Pem(keys.privateKey) };
}

/** Issues a TLS server certificate (EKU serverAuth, 90 days) for DNS names and IP addresses. */
export async function issueServerCertificate(ca: PemPair, names: readonly string[], now: Date = new Date()): Promise<PemPair> {
  const x509 = await loadX509();
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await webcrypto.subtle.importKey(
    'pkcs8',
    createPrivateKey(ca.keyPem).export({ type: 'pkcs8', format: 'der' }),
    EC_ALGORITHM,
    false,
    ['sign'],
  );
  const keys = await webcrypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [names[0] ?? 'localhost'] }, { O: ['Slipway development'] }],
    issuer: caCert.subject,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + SERVER_LIFETIME_DAYS * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        names.map((value) => ({ type: isIP(value) === 0 ? ('dns' as const) : ('ip' as const), value })),
        false,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await pkcs8Pem(keys.privateKey) };
}

/** localhost, the loopback addresses and this host's name when it is a usable DNS name. */
function serverNamesFor(hostname: string): string[] {
  const names = ['localhost', '127.0.0.1', '::1'];
  const host = hostname.trim().toLowerCase().replace(/\.$/, '');
  // A name a certificate cannot carry (underscores, empty labels) is left out rather than failing.
  const dnsName = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
  if (host !== '' && !names.includes(host) && (dnsName.test(host) || isIP(host) !== 0)) names.push(host);
  return names;
}

async function reusableCa(certPath: string, keyPath: string, now: Date): Promise<PemPair | undefined> {
  const [certPem, keyPem] = await Promise.all([readIfPresent(certPath), readIfPresent(keyPath)]);
  if (certPem === undefined || keyPem === undefined) return undefined;
  try {
    const cert = new X509Certificate(certPem);
    if (!cert.ca || !stillValid(cert, now) || !cert.checkPrivateKey(createPrivateKey(keyPem))) return undefined;
  } catch {
    return undefined; // Unparseable: replace it.
  }
  await chmod(keyPath, 0o600);
  return { certPem, keyPem };
}

async function reusableServer(
  certPath: string,
  keyPath: string,
  ca: PemPair,
  names: readonly string[],
  now: Date,
): Promise<PemPair | undefined> {
  const [certPem, keyPem] = await Promise.all([readIfPresent(certPath), readIfPresent(keyPath)]);
  if (certPem === undefined || keyPem === undefined) return undefined;
  try {
    const cert = new X509Certificate(certPem);
    const caCert = new X509Certificate(ca.certPem);
    const coversAll = names.every((n) => (isIP(n) === 0 ? cert.checkHost(n) !== undefined : cert.checkIP(n) !== undefined));
    if (
      !stillValid(cert, now) ||
      !cert.checkIssued(caCert) ||
      !cert.verify(caCert.publicKey) ||
      !cert.checkPrivateKey(createPrivateKey(keyPem)) ||
      !coversAll
    ) {
      return undefined;
    }
  } catch {
    return undefined;
  }
  await chmod(keyPath, 0o600);
  return { certPem, keyPem };
}

async function reusableSigningKey(path: string): Promise<SigningKeyPair | undefined> {
  const text = await readIfPresent(path);
  if (text === undefined) return undefined;
  try {
    const privateJwk = (JSON.parse(text) as { keys: SigningKeyPair['privateJwk'][] }).keys[0];
    if (privateJwk === undefined) return undefined;
    new TokenIssuer({ issuer: 'check', privateJwk }); // Throws unless it is a usable ES256 key.
    const { d: _d, ...publicJwk } = privateJwk;
    await chmod(path, 0o600);
    return { privateJwk, publicJwk };
  } catch {
    return undefined;
  }
}

function stillValid(cert: X509Certificate, now: Date): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return from <= now.getTime() && to - now.getTime() > MIN_REMAINING_DAYS * DAY_MS;
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // Positive, as RFC 5280 requires.
  return bytes.toString('hex');
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

function jwksText(jwk: object): string {
  return JSON.stringify({ keys: [jwk] }, null, 2) + '\n';
}

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GatewayError('CONFIG_INVALID', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

// Rename makes the new file appear whole: a reader never sees a half-written key.
async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, { mode, flag: 'wx' });
    await chmod(tmp, mode); // Exactly this mode, whatever the umask.
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new GatewayError('CONFIG_INVALID', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

let x509Loaded: Promise<typeof X509> | undefined;

// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata polyfill
// installed before the library loads; importing both lazily keeps that global out of processes that
// never create certificates.
function loadX509(): Promise<typeof X509> {
  x509Loaded ??= (async () => {
    await import('reflect-metadata');
    return await import('@peculiar/x509');
  })();
  return x509Loaded;
}
