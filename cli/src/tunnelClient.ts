import http2, { type ClientHttp2Session } from 'node:http2';
import { randomUUID } from 'node:crypto';
import { FlowControl, SocketDuplex, http2Settings, sessionReadAllowance, type Env, type Logger, type Platform } from '@slipway/proto';
import { CliError, toCliError } from './cliError.js';
import { connectGatewayTls } from './gatewayTls.js';
import { Http2TunnelStream } from './http2TunnelStream.js';
import { WebSocketTunnelStream } from './webSocketTunnelStream.js';
import type { TunnelStream } from './tunnelStream.js';
import type { Transport } from './config.js';
import { BuildSession } from './buildSession.js';
import type { ApiCarrier } from './gatewayApi.js';
import type tls from 'node:tls';

export interface TunnelClientOptions {
  gatewayUrl: URL;
  token: string;
  project: string | undefined;
  ca: Buffer | undefined;
  transport: Transport;
  env: Env;
  connectTimeoutMs: number;
  log: Logger;
  /** Wait at most this long for a builder (default 10 minutes). */
  acquireTimeoutMs?: number;
  /** Finish the build this long after the last stream ended; 0 keeps it until close() (default 30 s). */
  buildIdleMs?: number;
}

// Opens tunnel streams to the gateway. Over HTTP/2 every stream shares one session, opened on
// first use and again after it dies; where ALPN does not yield h2 (a proxy that only speaks
// HTTP/1.1), each stream gets its own WebSocket, and the choice is kept for the process's life.
export class TunnelClient implements ApiCarrier {
  readonly builds: BuildSession;
  private session: ClientHttp2Session | undefined;
  private connecting: Promise<ClientHttp2Session | 'websocket'> | undefined;
  private mode: 'h2' | 'websocket' | undefined;
  private closed = false;

  constructor(private readonly options: TunnelClientOptions) {
    if (options.transport !== 'auto') this.mode = options.transport;
    this.builds = new BuildSession({
      api: this,
      projectToken: options.token,
      log: options.log,
      acquireTimeoutMs: options.acquireTimeoutMs ?? 600_000,
      idleReleaseMs: options.buildIdleMs ?? 30_000,
      requestTimeoutMs: Math.max(options.connectTimeoutMs, 10_000),
    });
  }

  /** For API calls: the HTTP/2 session, or a way to get an HTTP/1.1 connection where there is none. */
  async carrier(): Promise<ClientHttp2Session | (() => Promise<tls.TLSSocket>)> {
    const carrier = await this.tunnelCarrier();
    return carrier === 'websocket' ? () => this.tls(['http/1.1']) : carrier;
  }

  get transport(): 'h2' | 'websocket' | undefined {
    return this.mode;
  }

  // Every stream belongs to a build: the first creates it and acquires a builder for the
  // platform; the build token then routes the stream to that builder.
  async open(platform: Platform): Promise<TunnelStream> {
    if (this.closed) throw new CliError('INTERNAL', 'tunnel client is closed');
    const token = await this.builds.tokenFor(platform);
    const headers = { token, platform, project: this.options.project, streamId: randomUUID() };
    const carrier = await this.tunnelCarrier();
    let stream: TunnelStream;
    if (carrier === 'websocket') {
      const socket = await this.tls(['http/1.1']);
      stream = new WebSocketTunnelStream(this.options.gatewayUrl, socket, headers);
    } else {
      stream = new Http2TunnelStream(carrier, headers);
    }
    this.builds.streamOpened();
    stream.once('remote-end', (error) => {
      // The build is over for the gateway (its builder was lost, or it ended): start afresh next time.
      if (error && (error.code === 'AGENT_LOST' || error.code === 'BUILD_ENDED')) this.builds.invalidate();
    });
    return stream;
  }

  /** A stream from open() is finished with (bridged to its end, or abandoned). */
  streamEnded(): void {
    this.builds.streamClosed();
  }

  private tls(alpn: string[]): ReturnType<typeof connectGatewayTls> {
    return connectGatewayTls({
      gatewayUrl: this.options.gatewayUrl,
      ca: this.options.ca,
      env: this.options.env,
      alpn,
      timeoutMs: this.options.connectTimeoutMs,
    });
  }

  private tunnelCarrier(): Promise<ClientHttp2Session | 'websocket'> {
    if (this.mode === 'websocket') return Promise.resolve('websocket');
    if (this.session && !this.session.closed && !this.session.destroyed) return Promise.resolve(this.session);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<ClientHttp2Session | 'websocket'> {
    const socket = await this.tls(this.mode === 'h2' ? ['h2'] : ['h2', 'http/1.1']);
    if (socket.alpnProtocol !== 'h2') {
      if (this.mode === 'h2') {
        socket.destroy();
        throw new CliError('TUNNEL_REFUSED', `HTTP/2 was required but the path to ${this.options.gatewayUrl.host} negotiated '${socket.alpnProtocol || 'no protocol'}'`);
      }
      this.options.log.info('HTTP/2 is not available end to end; using WebSocket', { negotiated: String(socket.alpnProtocol) });
      socket.destroy();
      this.mode = 'websocket';
      return 'websocket';
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

  /** Finishes the build (if any), then closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.builds.close().catch(() => {});
    this.closed = true;
    this.session?.close();
  }
}
