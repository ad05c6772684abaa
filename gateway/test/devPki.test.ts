import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { DEV_PKI_FILES, ensureDevPki, makeTestPki, type TestPki } from '../src/devPki.js';
import { TokenIssuer } from '../src/tokenIssuer.js';
import { loadVerificationKeys, TokenVerifier } from '../src/tokenVerifier.js';

const DAY_MS = 24 * 60 * 60 * 1000;

interface TlsServerHandle {
  port: number;
  close(): Promise<void>;
}

async function startTlsServer(certPem: string, keyPem: string): Promise<TlsServerHandle> {
  const server = tls.createServer({ cert: certPem, key: keyPem }, (socket) => {
    socket.on('error', () => {});
    socket.end('hello');
  });
  // Handshakes that the client aborts surface here; they are the point of some tests.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Connects, completes (or fails) the TLS handshake, and reports what the client saw. */
function handshake(
  port: number,
  options: { ca: string; servername?: string; host?: string },
): Promise<{ authorized: boolean; peerSubject: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      port,
      host: options.host ?? '127.0.0.1',
      ...(options.servername === undefined ? {} : { servername: options.servername }),
      ca: [options.ca],
    });
    socket.on('error', (err) => {
      socket.destroy();
      reject(err);
    });
    socket.on('secureConnect', () => {
      const result = { authorized: socket.authorized, peerSubject: String(socket.getPeerCertificate().subject?.CN ?? '') };
      socket.destroy();
      resolve(result);
    });
  });
}

describe('development PKI over TLS', () => {
  let pki: TestPki;
  let server: TlsServerHandle;

  before(async () => {
    pki = await makeTestPki();
    server = await startTlsServer(pki.serverCertPem, pki.serverKeyPem);
  });
  after(async () => {
    await server?.close();
    await pki?.cleanup();
  });

  it('completes a handshake to localhost for a client trusting only the dev CA', async () => {
    const result = await handshake(server.port, { ca: pki.caCertPem, servername: 'localhost' });
    assert.equal(result.authorized, true);
    assert.equal(result.peerSubject, 'localhost');
  });

  it('completes a handshake to 127.0.0.1 (IP SAN) for a client trusting only the dev CA', async () => {
    const result = await handshake(server.port, { ca: pki.caCertPem, host: '127.0.0.1' });
    assert.equal(result.authorized, true);
  });

  it('fails the handshake for a client trusting an unrelated CA', async () => {
    await assert.rejects(handshake(server.port, { ca: pki.unrelatedCa.certPem, servername: 'localhost' }), (err: Error & { code?: string }) => {
      assert.match(err.message, /certificate/i);
      assert.ok(
        ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN'].includes(err.code ?? ''),
        `unexpected code ${err.code}`,
      );
      return true;
    });
  });

  it('fails the handshake when the server presents a certificate from an unrelated CA', async () => {
    const rogue = await startTlsServer(pki.unrelatedServer.certPem, pki.unrelatedServer.keyPem);
    try {
      await assert.rejects(handshake(rogue.port, { ca: pki.caCertPem, servername: 'localhost' }), /certificate/i);
    } finally {
      await rogue.close();
    }
  });

  it('fails the handshake for a name the certificate does not cover', async () => {
    await assert.rejects(handshake(server.port, { ca: pki.caCertPem, servername: 'build.example.com' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
      return true;
    });
  });
});

describe('ensureDevPki', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'slipway-devpki-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a CA, a server certificate and a signing key with the documented properties', async () => {
    const pki = await ensureDevPki(dir, { hostname: 'Build-Box.example.' });
    assert.deepEqual(pki.created, { ca: true, server: true, signingKey: true });
    assert.deepEqual(pki.serverNames, ['localhost', '127.0.0.1', '::1', 'build-box.example']);

    const ca = new X509Certificate(pki.caCertPem);
    assert.equal(ca.ca, true);
    assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const caDays = (Date.parse(ca.validTo) - Date.now()) / DAY_MS;
    assert.ok(caDays > 364 && caDays <= 365, `CA valid for ${caDays} days`);

    const leaf = new X509Certificate(pki.serverCertPem);
    assert.equal(leaf.ca, false);
    assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    for (const name of ['localhost', 'build-box.example']) assert.equal(leaf.checkHost(name), name);
    for (const ip of ['127.0.0.1', '::1']) assert.equal(leaf.checkIP(ip), ip);
    assert.equal(leaf.checkHost('other.example'), undefined);
    const leafDays = (Date.parse(leaf.validTo) - Date.now()) / DAY_MS;
    assert.ok(leafDays > 89 && leafDays <= 90, `server certificate valid for ${leafDays} days`);

    for (const file of [DEV_PKI_FILES.caKey, DEV_PKI_FILES.serverKey, DEV_PKI_FILES.jwksPrivate]) {
      assert.equal((await stat(join(dir, file))).mode & 0o777, 0o600, file);
    }
    const publicJwks = JSON.parse(await readFile(pki.jwksPath, 'utf8')) as { keys: Array<Record<string, unknown>> };
    assert.equal(publicJwks.keys.length, 1);
    assert.equal(publicJwks.keys[0]?.['d'], undefined);
    assert.equal(publicJwks.keys[0]?.['kid'], pki.signingKey.publicJwk.kid);
  });

  it('issues tokens that a verifier loaded from jwks.json accepts, and refuses jwks.private.json', async () => {
    const pki = await ensureDevPki(dir, { hostname: 'build-box.example' });
    const token = await new TokenIssuer({ issuer: 'dev', privateJwk: pki.signingKey.privateJwk }).issueClientToken({
      project: 'demo',
      subject: 'dev',
      scopes: ['build'],
      ttlSec: 60,
    });
    const verifier = new TokenVerifier({ issuer: 'dev', keys: await loadVerificationKeys(pki.jwksPath) });
    assert.equal((await verifier.verifyClient(token)).project, 'demo');
    await assert.rejects(loadVerificationKeys(pki.jwksPrivatePath), /private key material/);
  });

  it('reuses everything while it stays valid', async () => {
    const first = await ensureDevPki(dir, { hostname: 'build-box.example' });
    const second = await ensureDevPki(dir, { hostname: 'build-box.example' });
    assert.deepEqual(second.created, { ca: false, server: false, signingKey: false });
    assert.equal(second.caCertPem, first.caCertPem);
    assert.equal(second.serverCertPem, first.serverCertPem);
    assert.deepEqual(second.signingKey, first.signingKey);
  });

  it('reissues the server certificate when the host name changes', async () => {
    const before = await ensureDevPki(dir, { hostname: 'build-box.example' });
    const after = await ensureDevPki(dir, { hostname: 'renamed.example' });
    assert.deepEqual(after.created, { ca: false, server: true, signingKey: false });
    assert.notEqual(after.serverCertPem, before.serverCertPem);
    assert.equal(new X509Certificate(after.serverCertPem).checkHost('renamed.example'), 'renamed.example');
  });

  it('reissues the server certificate within 7 days of its expiry, keeping the CA', async () => {
    const current = await ensureDevPki(dir, { hostname: 'renamed.example' });
    const later = await ensureDevPki(dir, { hostname: 'renamed.example', now: new Date(Date.now() + 84 * DAY_MS) });
    assert.deepEqual(later.created, { ca: false, server: true, signingKey: false });
    assert.equal(later.caCertPem, current.caCertPem);
    const leaf = new X509Certificate(later.serverCertPem);
    assert.ok(leaf.verify(new X509Certificate(current.caCertPem).publicKey));
  });

  it('replaces the CA (and so the server certificate) within 7 days of the CA expiring', async () => {
    const current = await ensureDevPki(dir, { hostname: 'renamed.example' });
    const later = await ensureDevPki(dir, { hostname: 'renamed.example', now: new Date(Date.now() + 360 * DAY_MS) });
    assert.deepEqual(later.created, { ca: true, server: true, signingKey: false });
    assert.notEqual(later.caCertPem, current.caCertPem);
  });

  it('replaces files that are damaged or do not belong together', async () => {
    await ensureDevPki(dir, { hostname: 'renamed.example' });
    const other = await makeTestPki();
    try {
      // A server key that does not match the certificate.
      await writeFile(join(dir, DEV_PKI_FILES.serverKey), other.serverKeyPem);
      await writeFile(join(dir, DEV_PKI_FILES.jwksPrivate), '{ not json');
      const repaired = await ensureDevPki(dir, { hostname: 'renamed.example' });
      assert.deepEqual(repaired.created, { ca: false, server: true, signingKey: true });
      assert.ok(new X509Certificate(repaired.serverCertPem).checkPrivateKey(createPrivateKey(repaired.serverKeyPem)));
    } finally {
      await other.cleanup();
    }
  });
});
