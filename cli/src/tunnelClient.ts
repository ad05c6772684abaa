import { randomUUID } from 'node:crypto';
import type { ClientHttp2Session } from 'node:http2';
import type tls from 'node:tls';
import { formatSessionAttachment, type Env, type Logger, type Platform, type SessionAttachment } from '@slipway/proto';
import { CliError, toCliError } from './cliError.js';
import { GatewayConnection } from './gatewayConnection.js';
import { Http2TunnelStream, type TunnelRequestHeaders } from './http2TunnelStream.js';
import { WebSocketTunnelStream } from './webSocketTunnelStream.js';
import type { TunnelStream } from './tunnelStream.js';
import type { Transport } from './config.js';
import { BuildSession } from './buildSession.js';
import type { ApiCarrier } from './gatewayApi.js';
import type { TransportMemory } from './transportMemory.js';

/**
 * The project token, or where to get one when it is needed: a token exchanged for the CI job's
 * identity is short-lived, so it is asked for each time a build is created.
 */
export type ProjectTokenSource = string | ((api: ApiCarrier) => Promise<string>);

export interface TunnelClientOptions {
  gatewayUrl: URL;
  token: ProjectTokenSource;
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
  /** See GatewayConnectionOptions. */
  transportMemory?: TransportMemory;
  keepaliveMs?: number;
}

// Opens tunnel streams to the gateway. Over HTTP/2 every stream shares the connection's one
// session; where ALPN does not yield h2, each stream gets its own WebSocket.
export class TunnelClient implements ApiCarrier {
  readonly builds: BuildSession;
  private readonly connection: GatewayConnection;
  private closed = false;

  constructor(private readonly options: TunnelClientOptions) {
    this.connection = new GatewayConnection(options);
    const source = options.token;
    this.builds = new BuildSession({
      api: this,
      projectToken: typeof source === 'string' ? () => Promise.resolve(source) : () => source(this),
      log: options.log,
      acquireTimeoutMs: options.acquireTimeoutMs ?? 600_000,
      idleReleaseMs: options.buildIdleMs ?? 30_000,
      requestTimeoutMs: Math.max(options.connectTimeoutMs, 10_000),
    });
  }

  /** For API calls: the HTTP/2 session, or a way to get an HTTP/1.1 connection where there is none. */
  carrier(): Promise<ClientHttp2Session | (() => Promise<tls.TLSSocket>)> {
    return this.connection.carrier();
  }

  get transport(): 'h2' | 'websocket' | undefined {
    return this.connection.transport;
  }

  /** WebSocket was chosen from what an earlier process learned about this network, without a probe. */
  get rememberedWebSocket(): boolean {
    return this.connection.rememberedWebSocket;
  }

  // Every stream belongs to a build: the first creates it and acquires a builder for the
  // platform; the build token then routes the stream to that builder.
  // With `session`, the stream carries that BuildKit session (served by the caller) rather than
  // BuildKit's API: see proto's sessionAttachment.ts.
  async open(platform: Platform, options: { session?: SessionAttachment } = {}): Promise<TunnelStream> {
    if (this.closed) throw new CliError('INTERNAL', 'tunnel client is closed');
    const token = await this.builds.tokenFor(platform);
    const headers: TunnelRequestHeaders = { token, platform, project: this.options.project, streamId: randomUUID() };
    if (options.session) headers.session = formatSessionAttachment(options.session);
    let stream: TunnelStream | undefined;
    // A replica that drains sends GOAWAY: its session takes no new stream, and the next session
    // (through the load balancer) reaches another replica. A stream opened in the instant between
    // the GOAWAY and our noticing it is refused locally, before any byte moved: open it again.
    for (let attempt = 1; stream === undefined; attempt++) {
      const carrier = await this.connection.sessionOrHttp1();
      if (carrier === 'http/1.1') {
        const socket = await this.connection.tls(['http/1.1']);
        stream = new WebSocketTunnelStream(this.options.gatewayUrl, socket, headers, this.connection.keepaliveMs);
        break;
      }
      try {
        stream = new Http2TunnelStream(carrier, headers);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (attempt >= 3 || (code !== 'ERR_HTTP2_GOAWAY_SESSION' && code !== 'ERR_HTTP2_INVALID_SESSION')) throw toCliError(err);
        this.options.log.info('gateway session is closing; opening the stream on a new one', { code: String(code) });
      }
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

  /** Finishes the build (if any), then closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.builds.close().catch(() => {});
    this.closed = true;
    this.connection.close();
  }
}
