import http2, { type ClientHttp2Session } from 'node:http2';
import type tls from 'node:tls';
import { FlowControl, SocketDuplex, http2Settings, sessionReadAllowance, type Env, type Logger } from '@slipway/proto';
import { CliError, toCliError } from './cliError.js';
import { TlsResumption, connectGatewayTls } from './gatewayTls.js';
import type { ApiCarrier } from './gatewayApi.js';
import type { Transport } from './config.js';
import { proxyFor, proxyLabel } from './proxySettings.js';
import { TransportMemory } from './transportMemory.js';

/** How often an idle connection carries a keepalive unless told otherwise. */
export const DEFAULT_KEEPALIVE_MS = 20_000;

export interface GatewayConnectionOptions {
  gatewayUrl: URL;
  ca: Buffer | undefined;
  transport: Transport;
  env: Env;
  connectTimeoutMs: number;
  log: Logger;
  /** Where `auto` keeps what it learned about networks; without it every process probes. */
  transportMemory?: TransportMemory;
  /**
   * HTTP/2 PINGs (and WebSocket pings, see WebSocketTunnelStream) this often, so proxies and NATs
   * that drop idle connections keep a long, quiet build's connections; 0 sends none.
   */
  keepaliveMs?: number;
}

// The way to the gateway: one HTTP/2 session, opened on first use and again after it dies; where
// ALPN does not yield h2 (a proxy that only speaks HTTP/1.1), a fresh TLS connection per use, and
// that choice is kept for the process's life, and remembered for the network (TransportMemory).
// Tunnel streams and API calls both travel on it.
export class GatewayConnection implements ApiCarrier {
  private session: ClientHttp2Session | undefined;
  private connecting: Promise<ClientHttp2Session | 'http/1.1'> | undefined;
  private mode: 'h2' | 'websocket' | undefined;
  private readonly networkKey: string | undefined;
  private readonly resumption: TlsResumption;
  /** WebSocket was chosen from what an earlier process learned, without probing. */
  readonly rememberedWebSocket: boolean = false;

  constructor(private readonly options: GatewayConnectionOptions) {
    this.resumption = new TlsResumption(options.ca);
    if (options.transport !== 'auto') {
      this.mode = options.transport;
      return;
    }
    this.networkKey = networkKeyOf(options.gatewayUrl, options.env);
    const remembered = this.networkKey === undefined ? undefined : options.transportMemory?.recall(this.networkKey);
    if (remembered) {
      this.mode = 'websocket';
      this.rememberedWebSocket = true;
      options.log.info('HTTP/2 did not get through this network before; using WebSocket without probing', {
        network: this.networkKey ?? '',
        negotiated: remembered.negotiated,
        learnedAt: new Date(remembered.learnedAtMs).toISOString(),
      });
    }
  }

  get keepaliveMs(): number {
    return this.options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
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
      resumption: this.resumption,
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
      const negotiated = socket.alpnProtocol || 'no protocol';
      this.options.log.info('HTTP/2 is not available end to end; using WebSocket', { negotiated });
      socket.destroy();
      this.mode = 'websocket';
      this.remember((memory, key) => memory.rememberWebSocket(key, negotiated));
      return 'http/1.1';
    }
    if (this.mode === undefined) this.remember((memory, key) => memory.forget(key));
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
    if (this.keepaliveMs > 0) {
      const ping = setInterval(() => {
        if (!session.destroyed) session.ping(() => {});
      }, this.keepaliveMs);
      ping.unref();
      session.once('close', () => clearInterval(ping));
    }
    this.session = session;
    return session;
  }

  private remember(change: (memory: TransportMemory, key: string) => void): void {
    const memory = this.options.transportMemory;
    if (memory === undefined || this.networkKey === undefined) return;
    try {
      change(memory, this.networkKey);
    } catch (err) {
      // Only the next process's probe is at stake.
      this.options.log.warn('cannot record what this network allows', { file: memory.file ?? '', reason: (err as Error).message });
    }
  }
}

/** The network as TransportMemory names it; undefined when the proxy settings are unusable (the dial says why). */
export function networkKeyOf(gatewayUrl: URL, env: Env): string | undefined {
  try {
    const proxy = proxyFor(env, gatewayUrl);
    return TransportMemory.key(proxy === undefined ? undefined : proxyLabel(proxy), gatewayUrl.hostname, Number(gatewayUrl.port || 443));
  } catch {
    return undefined;
  }
}
