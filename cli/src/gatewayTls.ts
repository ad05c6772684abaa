import tls from 'node:tls';
import type { Env } from '@slipway/proto';
import { CliError } from './cliError.js';
import { dialGateway } from './connectTunnel.js';

export interface GatewayTlsOptions {
  gatewayUrl: URL;
  ca: Buffer | undefined;
  env: Env;
  alpn: string[];
  timeoutMs: number;
  signal?: AbortSignal;
}

function describeIssuer(cert: tls.PeerCertificate | undefined): string {
  if (!cert || Object.keys(cert).length === 0) return 'an unknown issuer';
  const issuer = cert.issuer as unknown as Record<string, string> | undefined;
  const name = issuer?.['CN'] ?? issuer?.['O'] ?? 'an unnamed issuer';
  return `'${name}'${issuer?.['O'] && issuer['O'] !== name ? ` (${issuer['O']})` : ''}`;
}

// TLS to the gateway, directly or through the proxy the environment names. Certificate checks
// are done here rather than inside the handshake so that a failure can say who issued the
// certificate that was offered: behind a TLS-inspecting proxy, that name is the whole story.
export async function connectGatewayTls(options: GatewayTlsOptions): Promise<tls.TLSSocket> {
  const host = options.gatewayUrl.hostname.replace(/^\[|\]$/g, '');
  const port = Number(options.gatewayUrl.port || 443);
  const raw = await dialGateway({ env: options.env, host, port, timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) });
  raw.on('error', () => {});
  const socket = tls.connect({
    socket: raw,
    // Names the gateway for the certificate check: on a socket of our own Node would otherwise
    // check the name against the proxy's address, or 'localhost'.
    host,
    servername: /^[\d.]+$|:/.test(host) ? undefined : host,
    ca: options.ca,
    ALPNProtocols: options.alpn,
    rejectUnauthorized: false,
  });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new CliError('TLS_FAILED', `TLS handshake with ${host}:${port} did not finish within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new CliError('TLS_FAILED', `TLS handshake with ${host}:${port} failed: ${err.message}`, { cause: err }));
    });
  });
  // Tunnels carry interactive traffic (gRPC calls, a 1-byte write waiting for its echo): Nagle's
  // algorithm would hold small writes back for an ACK.
  socket.setNoDelay(true);
  if (!socket.authorized) {
    const why = String(socket.authorizationError ?? 'unknown reason');
    const cert = socket.getPeerCertificate();
    const issuer = describeIssuer(cert);
    socket.destroy();
    if (why === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      throw new CliError(
        'TLS_FAILED',
        `the certificate presented for ${host}:${port} (issued by ${issuer}) is for ${cert.subjectaltname || 'other names'}, not ${host}; ` +
          'check SLIPWAY_GATEWAY names the gateway as its certificate does',
      );
    }
    throw new CliError(
      'TLS_FAILED',
      `the certificate presented for ${host}:${port} was issued by ${issuer}, which is not trusted (${why}). ` +
        `If a proxy on this network inspects TLS, ${issuer} is its CA: set SLIPWAY_CA_CERT (or NODE_EXTRA_CA_CERTS) to a PEM file holding that CA's certificate.`,
    );
  }
  return socket;
}
