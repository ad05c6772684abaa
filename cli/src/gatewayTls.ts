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
  /** Reused across connections: the trust store is parsed once and TLS sessions are resumed. */
  resumption?: TlsResumption;
}

// What makes the second and later TLS connections to the gateway cheap: the CA bundle parsed
// once into a SecureContext (parsing it is tens of milliseconds of CPU), and the latest session
// ticket, so the handshake is resumed rather than done in full. WebSocket tunnels open one TLS
// connection per stream, so this is most of their stream-open cost. A ticket is kept only from a
// connection whose certificate was verified; a resumed session carries that verification.
export class TlsResumption {
  private context: tls.SecureContext | undefined;
  private ticket: Buffer | undefined;

  constructor(private readonly ca: Buffer | undefined) {}

  secureContext(): tls.SecureContext {
    this.context ??= tls.createSecureContext(this.ca ? { ca: this.ca } : {});
    return this.context;
  }

  session(): Buffer | undefined {
    return this.ticket;
  }

  /** Keeps the tickets the gateway sends on this connection, once its certificate has been verified. */
  keepTicketsOf(socket: tls.TLSSocket): void {
    socket.on('session', (ticket: Buffer) => {
      if (socket.authorized) this.ticket = ticket;
    });
  }

  /** The server refused what we offered (or its certificate failed): start afresh. */
  forget(): void {
    this.ticket = undefined;
  }
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
    ...(options.resumption ? { secureContext: options.resumption.secureContext() } : { ca: options.ca }),
    ...(options.resumption?.session() ? { session: options.resumption.session() } : {}),
    ALPNProtocols: options.alpn,
    rejectUnauthorized: false,
  });
  socket.on('error', () => {});
  options.resumption?.keepTicketsOf(socket);
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
    options.resumption?.forget();
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
