// A CA of the kind a TLS-inspecting corporate proxy installs on its users' machines, and the
// certificates it mints on the fly for the hosts its users visit. Made with the openssl program,
// so the certificates are as ordinary as a real appliance's.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from './processes.js';

export interface InspectionCa {
  /** The CA's common name: what an error about an untrusted certificate should show. */
  readonly name: string;
  readonly certPem: string;
  /** A PEM file holding the CA certificate, for SLIPWAY_CA_CERT / NODE_EXTRA_CA_CERTS. */
  readonly certPath: string;
  /** A certificate and key for `host` (a name or IP literal), issued by this CA; cached per host. */
  leafFor(host: string): Promise<{ certPem: string; keyPem: string }>;
  remove(): Promise<void>;
}

export async function makeInspectionCa(name = 'Slipway Test Inspecting Proxy CA'): Promise<InspectionCa> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-inspection-ca-'));
  const certPath = path.join(dir, 'ca.pem');
  const keyPath = path.join(dir, 'ca.key');
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}/O=Slipway tests`,
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', keyPath, '-out', certPath]);
  const certPem = await readFile(certPath, 'utf8');
  const leaves = new Map<string, Promise<{ certPem: string; keyPem: string }>>();
  let serial = 0;
  const issue = async (host: string): Promise<{ certPem: string; keyPem: string }> => {
    const id = `leaf-${++serial}`;
    const leafKey = path.join(dir, `${id}.key`);
    const csr = path.join(dir, `${id}.csr`);
    const leafCert = path.join(dir, `${id}.pem`);
    const ext = path.join(dir, `${id}.ext`);
    const san = net.isIP(host) ? `IP:${host}` : `DNS:${host}`;
    await writeFile(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${host}`, '-keyout', leafKey, '-out', csr]);
    await openssl(['x509', '-req', '-in', csr, '-CA', certPath, '-CAkey', keyPath, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', leafCert]);
    return { certPem: await readFile(leafCert, 'utf8'), keyPem: await readFile(leafKey, 'utf8') };
  };
  return {
    name,
    certPem,
    certPath,
    leafFor(host) {
      let leaf = leaves.get(host);
      if (leaf === undefined) {
        leaf = issue(host);
        leaves.set(host, leaf);
      }
      return leaf;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

async function openssl(args: string[]): Promise<void> {
  await runCommand('openssl', args, { timeoutMs: 30_000 });
}
