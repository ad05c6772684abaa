import http2, { type ClientHttp2Session } from 'node:http2';
import type tls from 'node:tls';
import { FlowControl, SocketDuplex, http2Settings, sessionReadAllowance, type Env, type Logger } from '@slipway/proto';
import { CliError, toCliError } from './cliError.js';
import { connectGatewayTls } from './gatewayTls.js';
import type { ApiCarrier } from './gatewayApi.js';
import type { Transport } from './config.js';

export interface GatewayConnectionOptions {
  gatewayUrl: URL;
  ca: Buffer | undefined;
  transport: Transport;
  env: Env;
  connectTimeoutMs: number;
  log: Logger;
}

// The way to the gateway: one HTTP/2 session, opened on first use and again after it dies; where
// ALPN does not yield h2 (a proxy that only speaks HTTP/1.1), a fresh TLS connection per use, and
// that choice is kept for the process's life. Tunnel streams and API calls both travel on it.
export class GatewayConnection implements ApiCarrier {
  private session: ClientHttp2Session | undefined;
  private connecting: Promise<ClientHttp2Session | 'http/1.1'> | undefined;
  private mode: 'h2' | 'websocket' | undefined;

  constructor(private readonly options: GatewayConnectionOptions) {
    if (options.transport !== 'auto') this.mode = options.transport;
  }

  get gatewayUrl(): URL {
    return this.options.gatewayUrl;
  }

  /** 'websocket' once HTTP/2 turned out not to get through (or was ruled out). */
  get transport(): 'h2' | 'websocket' | undefined {
    return this.mode;
  }

  /** For API calls: the HTTP/2 session, or a way to get an HTTP/1.1 connection where there is none. */
  async carrier(): Promise<ClientHttp2Session | (() => Promise<tls.TLSSocket>)> {
    const carrier = await this.sessionOrHttp1();
    return carrier === 'http/1.1' ? () => this.tls(['http/1.1']) : carrier;
  }

  /** The HTTP/2 session, or 'http/1.1' when each use needs its own connection (see tls()). */
  sessionOrHttp1(): Promise<ClientHttp2Session | 'http/1.1'> {
    if (this.mode === 'websocket') return Promise.resolve('http/1.1');
    if (this.session && !this.session.closed && !this.session.destroyed) return Promise.resolve(this.session);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** A fresh TLS connection to the gateway offering these ALPN protocols. */
  tls(alpn: string[]): Promise<tls.TLSSocket> {
    return connectGatewayTls({
      gatewayUrl: this.options.gatewayUrl,
      ca: this.options.ca,
      env: this.options.env,
      alpn,
      timeoutMs: this.options.connectTimeoutMs,
    });
  }

  close(): void {
    this.session?.close();
  }

  private async connect(): Promise<ClientHttp2Session | 'http/1.1'> {
    const socket = await this.tls(this.mode === 'h2' ? ['h2'] : ['h2', 'http/1.1']);
    if (socket.alpnProtocol !== 'h2') {
      if (this.mode === 'h2') {
        socket.destroy();
        throw new CliError('TUNNEL_REFUSED', `HTTP/2 was required but the path to ${this.options.gatewayUrl.host} negotiated '${socket.alpnProtocol || 'no protocol'}'`);
      }
      this.options.log.info('HTTP/2 is not available end to end; using WebSocket', { negotiated: String(socket.alpnProtocol) });
      socket.destroy();
      this.mode = 'websocket';
      return 'http/1.1';
    }
    this.mode = 'h2';
    const session = http2.connect(this.options.gatewayUrl.origin, {
      // The gateway's end is a native session that stops reading while it writes; this end must
      // keep reading or a stream moving bulk data both ways can deadlock the connection.
      createConnection: () => new SocketDuplex(socket, sessionReadAllowance(FlowControl.sessionWindowBytes)),
      settings: http2Settings(),
      maxSessionMemory: FlowControl.maxSessionMemoryMiB,
    });
    session.on('error', (err) => this.options.log.warn('gateway session failed', { reason: err.message }));
    session.on('close', () => {
      if (this.session === session) this.session = undefined;
    });
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', (err) => reject(toCliError(err)));
    });
    session.setLocalWindowSize(FlowControl.sessionWindowBytes);
    // Keep the session alive through proxies and NATs that drop idle connections.
    const ping = setInterval(() => {
      if (!session.destroyed) session.ping(() => {});
    }, 20_000);
    ping.unref();
    session.once('close', () => clearInterval(ping));
    this.session = session;
    return session;
  }
}
