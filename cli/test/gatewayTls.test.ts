import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { TlsResumption, connectGatewayTls } from '../src/gatewayTls.js';

// Real TLS: a CA and a server certificate made with openssl, a Node TLS server that issues
// session tickets as the gateway does.
let dir: string;
let server: tls.Server;
let url: URL;
let ca: Buffer;
let otherCa: Buffer;
let handshakes = 0;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-tls-'));
  for (const name of ['ca', 'other']) {
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name} test CA`);
  }
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=gateway');
  writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
  ca = readFileSync(path.join(dir, 'ca.pem'));
  otherCa = readFileSync(path.join(dir, 'other.pem'));
  server = tls.createServer({ key: readFileSync(path.join(dir, 'server.key')), cert: readFileSync(path.join(dir, 'server.pem')), ALPNProtocols: ['http/1.1'] }, (socket) => {
    socket.on('error', () => {});
    socket.on('data', (d) => socket.write(d));
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    if (!socket.isSessionReused()) handshakes++;
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}`);
});

after(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function connect(resumption: TlsResumption, withCa: Buffer): Promise<tls.TLSSocket> {
  const socket = await connectGatewayTls({ gatewayUrl: url, ca: withCa, env: {}, alpn: ['http/1.1'], timeoutMs: 10_000, resumption });
  // A round trip: TLS 1.3 tickets come after the handshake, ahead of the first answer.
  socket.write('x');
  await once(socket, 'data');
  return socket;
}

test('later connections to the gateway resume the TLS session of a verified one', async () => {
  const resumption = new TlsResumption(ca);
  const before = handshakes;
  const first = await connect(resumption, ca);
  assert.equal(first.isSessionReused(), false);
  assert.ok(resumption.session(), 'the gateway\'s ticket was kept');
  first.destroy();
  const second = await connect(resumption, ca);
  assert.equal(second.isSessionReused(), true, 'the second connection resumed');
  assert.equal(second.authorized, true, 'a resumed session still counts as verified');
  second.destroy();
  assert.equal(handshakes - before, 1, 'one full handshake for two connections');
});

test('no ticket is kept from a gateway whose certificate is not trusted, and the failure names the issuer', async () => {
  const resumption = new TlsResumption(otherCa);
  await assert.rejects(connect(resumption, otherCa), (err: Error & { code?: string }) => err.code === 'TLS_FAILED' && /issued by 'ca test CA'/.test(err.message));
  assert.equal(resumption.session(), undefined);
});
