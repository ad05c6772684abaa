import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface TestTls {
  dir: string;
  caCertPath: string;
  caCertPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  cleanup(): Promise<void>;
}

function openssl(args: string[], cwd: string): void {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl ${args[0]} failed: ${result.stderr || result.error?.message}`);
}

// A throwaway CA and a server certificate for 127.0.0.1 signed by it, made with the real openssl:
// the agent verifies gateways against a CA file, so a self-signed leaf would test less.
export async function makeTestTls(): Promise<TestTls> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sw-agent-tls-'));
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    openssl(['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=slipway agent test CA', '-keyout', 'ca.key', '-out', 'ca.pem',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], dir);
    openssl(['req', '-new', ...ec, '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr'], dir);
    await fs.writeFile(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '2', '-days', '1',
      '-extfile', 'server.ext', '-out', 'server.pem'], dir);
    const read = (name: string): Promise<string> => fs.readFile(path.join(dir, name), 'utf8');
    return {
      dir,
      caCertPath: path.join(dir, 'ca.pem'),
      caCertPem: await read('ca.pem'),
      serverCertPem: await read('server.pem'),
      serverKeyPem: await read('server.key'),
      cleanup: () => fs.rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}
