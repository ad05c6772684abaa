import fs from 'node:fs';
import tls from 'node:tls';

// The certificates the gateway's TLS is checked against.
//
// Passing `ca` to Node's TLS replaces its whole trust store, NODE_EXTRA_CA_CERTS included, so a
// CA given with SLIPWAY_CA_CERT would silently undo what the machine's administrator set up for
// every Node program. And a TLS-inspecting proxy is usually only on some networks (the office,
// not home): a bundle that replaced the public roots would break the same laptop elsewhere. So
// both add to Node's bundled roots, as NODE_EXTRA_CA_CERTS does on its own.

export interface CaSource {
  /** Where it came from, for messages: `SLIPWAY_CA_CERT`, `the stored CA certificate`, `NODE_EXTRA_CA_CERTS`. */
  origin: string;
  path: string;
  pem: Buffer;
}

export interface CaBundle {
  /** For tls.connect's `ca`; undefined leaves Node's default store (nothing was added). */
  ca: Buffer | undefined;
  /** What was added to Node's bundled roots, in order. */
  sources: CaSource[];
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The number of PEM certificates in a bundle. */
export function countCertificates(pem: Buffer | string): number {
  return (pem.toString('latin1').match(PEM_CERTIFICATE) ?? []).length;
}

/** Reads a CA file; a problem (with what to do) is pushed instead of thrown. */
export function readCaSource(origin: string, file: string, problems: string[]): CaSource | undefined {
  let pem: Buffer;
  try {
    pem = fs.readFileSync(file);
  } catch (err) {
    problems.push(`${origin} '${file}' cannot be read: ${(err as Error).message}`);
    return undefined;
  }
  if (countCertificates(pem) === 0) {
    problems.push(`${origin} '${file}' holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)`);
    return undefined;
  }
  return { origin, path: file, pem };
}

export function caBundle(sources: readonly CaSource[]): CaBundle {
  if (sources.length === 0) return { ca: undefined, sources: [] };
  const parts = [...sources.map((s) => s.pem.toString('latin1').trim()), ...tls.rootCertificates];
  return { ca: Buffer.from(`${parts.join('\n')}\n`, 'latin1'), sources: [...sources] };
}
