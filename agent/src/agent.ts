import http2, { type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import fs from 'node:fs';
import { EventEmitter } from 'node:events';
import type tls from 'node:tls';
import { AGENT_STREAM_PATH, FlowControl, SocketDuplex, http2Settings, sessionReadAllowance, type Logger } from '@slipway/proto';
import { toAgentError } from './agentError.js';
import type { AgentConfig } from './config.js';
import { Backoff } from './backoff.js';
import { createControlServer } from './controlService.js';
import { GrpcBridge } from './grpcBridge.js';
import { TunnelStreamHandler } from './tunnelStreamHandler.js';
import { dialGateway } from './gatewayDialer.js';
import { AGENT_VERSION } from './version.js';

export type AgentState = 'connecting' | 'connected' | 'draining' | 'stopped';

// Keeps one link to the gateway alive: dial, serve HTTP/2 on the dialed connection until it
// dies, back off with jitter, dial again. Never listens on the network.
export class Agent extends EventEmitter<{ connected: []; disconnected: [string] }> {
  state: AgentState = 'connecting';
  private readonly handler: TunnelStreamHandler;
  private readonly bridge: GrpcBridge;
  private readonly h2: http2.Http2Server;
  private readonly backoff: Backoff;
  private readonly stop = new AbortController();
  private session: ServerHttp2Session | undefined;
  private socket: tls.TLSSocket | undefined;
  private lastPingAtMs = 0;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;

  constructor(
    private readonly config: AgentConfig,
    private readonly log: Logger,
  ) {
    super();
    this.handler = new TunnelStreamHandler(config.upstream, config.maxStreams, log);
    const control = createControlServer({
      describe: () => ({
        agentId: config.agentId,
        platform: config.platform,
        maxStreams: config.maxStreams,
        upstreamKind: config.upstream.kind,
        version: AGENT_VERSION,
        labels: config.labels,
        maxBuilds: config.maxBuilds,
        instanceId: config.instanceId ?? '',
      }),
      activeStreams: () => this.handler.activeStreams,
      draining: () => this.handler.isDraining,
      onPing: () => {
        this.lastPingAtMs = Date.now();
      },
    });
    this.bridge = new GrpcBridge(control);
    this.backoff = new Backoff(config.reconnectBaseMs, config.reconnectMaxMs);
    this.h2 = http2.createServer({ settings: http2Settings(), maxSessionMemory: FlowControl.maxSessionMemoryMiB });
    this.h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.route(stream, headers));
    this.h2.on('session', (session: ServerHttp2Session) => {
      session.on('error', () => {});
      session.on('localSettings', () => {
        if (!session.destroyed) session.setLocalWindowSize(FlowControl.sessionWindowBytes);
      });
      this.session = session;
    });
  }

  get activeStreams(): number {
    return this.handler.activeStreams;
  }

  start(): void {
    this.loop ??= this.run();
  }

  private route(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {});
    if (headers[':path'] === AGENT_STREAM_PATH) {
      this.handler.handle(stream, headers);
      return;
    }
    if (String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      this.bridge.forward(stream, headers);
      return;
    }
    stream.respond({ ':status': 404 }, { endStream: true });
  }

  private async run(): Promise<void> {
    const ca = this.config.caCertPath ? fs.readFileSync(this.config.caCertPath) : undefined;
    while (!this.stop.signal.aborted) {
      this.state = 'connecting';
      try {
        const socket = await dialGateway({
          gatewayUrl: this.config.gatewayUrl,
          token: this.config.token,
          agentId: this.config.agentId,
          platform: this.config.platform,
          version: AGENT_VERSION,
          ca,
          connectTimeoutMs: this.config.connectTimeoutMs,
          signal: this.stop.signal,
        });
        this.backoff.reset();
        const reason = await this.serve(socket);
        this.log.warn('gateway link lost', { reason });
        this.emit('disconnected', reason);
      } catch (err) {
        if (this.stop.signal.aborted) break;
        const error = toAgentError(err);
        this.log.warn('cannot connect to gateway', { code: error.code, reason: error.message });
      }
      if (this.stop.signal.aborted) break;
      const delayMs = this.backoff.nextDelayMs();
      this.log.info('reconnecting', { delayMs });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  // Serves HTTP/2 on the dialed connection; resolves with the reason once the link is gone.
  private serve(socket: tls.TLSSocket): Promise<string> {
    return new Promise((resolve) => {
      this.socket = socket;
      let reason = 'connection closed';
      socket.on('error', (err) => {
        reason = err.message;
      });
      this.lastPingAtMs = Date.now();
      // Evidence of life: the gateway's gRPC pings, and acks of HTTP/2 PING frames we send
      // ourselves (not flow-controlled, so busy streams cannot hold them back).
      let pingOutstanding = false;
      const watchdog = setInterval(() => {
        const silentMs = Date.now() - this.lastPingAtMs;
        if (silentMs > this.config.heartbeatTimeoutMs) {
          reason = `no heartbeat from the gateway for ${silentMs} ms (limit ${this.config.heartbeatTimeoutMs} ms)`;
          socket.destroy();
          return;
        }
        const session = this.session;
        if (session && !session.destroyed && !pingOutstanding) {
          pingOutstanding = true;
          session.ping((err) => {
            pingOutstanding = false;
            if (!err) this.lastPingAtMs = Date.now();
          });
        }
      }, Math.max(50, Math.floor(this.config.heartbeatTimeoutMs / 4)));
      socket.once('close', () => {
        clearInterval(watchdog);
        this.session = undefined;
        this.socket = undefined;
        resolve(reason);
      });
      // Through SocketDuplex: the gateway's session is native and stops reading while it writes;
      // this end must keep reading or bulk data both ways could deadlock the link. It also keeps
      // a socket that carried HTTP/1.1 (the Upgrade) away from a native HTTP/2 session.
      this.h2.emit('connection', new SocketDuplex(socket, sessionReadAllowance(FlowControl.sessionWindowBytes)));
      this.state = this.handler.isDraining ? 'draining' : 'connected';
      this.log.info('connected to gateway', { gateway: this.config.gatewayUrl.host, agentId: this.config.agentId, platform: this.config.platform });
      this.emit('connected');
    });
  }

  // SIGTERM: take nothing new (GOAWAY tells the gateway at once), let active streams finish
  // within the grace period, then close the link and stop reconnecting.
  async drain(graceMs = this.config.drainGraceMs): Promise<void> {
    this.state = 'draining';
    if (this.session && !this.session.destroyed) this.session.goaway(http2.constants.NGHTTP2_NO_ERROR);
    await this.handler.drain(graceMs);
    await this.close();
  }

  async close(): Promise<void> {
    this.state = 'stopped';
    this.stop.abort();
    this.wakeUp?.();
    this.socket?.destroy();
    this.bridge.close();
    await this.loop;
  }
}
