import http2, { type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import fs from 'node:fs';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { AGENT_STREAM_PATH, FlowControl, http2Settings, type Logger } from '@slipway/proto';
import { AgentError } from './agentError.js';
import type { AgentConfig } from './config.js';
import { createControlServer } from './controlService.js';
import { GrpcBridge } from './grpcBridge.js';
import { GatewayLink, type GatewayLinkHost } from './gatewayLink.js';
import { GatewayLanes } from './gatewayLanes.js';
import { TunnelStreamHandler } from './tunnelStreamHandler.js';
import { UpstreamSpares } from './upstreamSpares.js';
import { AGENT_VERSION } from './version.js';

export type AgentState = 'connecting' | 'connected' | 'draining' | 'stopped';

const LANE_RETRY_BASE_MS = 50;

export interface LiveGatewayLink {
  /** The configured URL the link was dialed through (a replica, or a load balancer). */
  gatewayUrl: string;
  /** The replica that answered. */
  gatewayId: string;
}

// Keeps links to gateway replicas alive, each on its own dial/serve/back-off loop (GatewayLink),
// and serves every one of them with the same HTTP/2 server, tunnel stream handler and control
// plane: one upstream and one stream budget however many replicas can reach the agent. Links go
// to distinct replicas (see claim), so losing one replica leaves the others carrying streams.
// Never listens on the network.
export class Agent extends EventEmitter<{ connected: [gatewayId: string]; disconnected: [reason: string, gatewayId: string] }> {
  private readonly handler: TunnelStreamHandler;
  private readonly bridge: GrpcBridge;
  private readonly upstream: UpstreamSpares;
  private readonly h2: http2.Http2Server;
  private readonly links: GatewayLink[];
  // Replica id -> the link that reaches it.
  private readonly held = new Map<string, GatewayLink>();
  // The lanes kept beside each link that is up.
  private readonly lanes = new Map<GatewayLink, GatewayLanes>();
  private readonly ca: Buffer | undefined;
  private draining = false;
  private stopped = false;

  constructor(
    private readonly config: AgentConfig,
    private readonly log: Logger,
  ) {
    super();
    this.upstream = new UpstreamSpares(config.upstream, config.upstreamSpares, config.upstreamSpareMaxAgeMs);
    this.handler = new TunnelStreamHandler(this.upstream, config.maxStreams, log);
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
    });
    this.bridge = new GrpcBridge(control);
    this.h2 = http2.createServer({ settings: http2Settings(), maxSessionMemory: FlowControl.maxSessionMemoryMiB });
    this.h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.route(stream, headers));
    this.h2.on('session', (session: ServerHttp2Session) => {
      session.on('error', () => {});
      session.on('localSettings', () => {
        if (!session.destroyed) session.setLocalWindowSize(FlowControl.sessionWindowBytes);
      });
    });

    const ca = config.caCertPath ? fs.readFileSync(config.caCertPath) : undefined;
    this.ca = ca;
    const host: GatewayLinkHost = {
      claim: (link, gatewayId) => this.claim(link, gatewayId),
      attach: (link, connection, laneKey) => this.attach(link, connection, laneKey),
      release: (link, reason) => this.release(link, reason),
    };
    // config.gatewayLinks slots per URL: one per replica named directly, several through a load
    // balancer, which each settle on a different replica behind it.
    this.links = config.gatewayUrls.flatMap((gatewayUrl) =>
      Array.from(
        { length: config.gatewayLinks },
        (_, i) =>
          new GatewayLink(
            {
              gatewayUrl,
              slot: config.gatewayLinks > 1 ? `${gatewayUrl.host}#${i + 1}` : gatewayUrl.host,
              dial: {
                token: config.token,
                agentId: config.agentId,
                platform: config.platform,
                version: AGENT_VERSION,
                ca,
                connectTimeoutMs: config.connectTimeoutMs,
                instanceIdentity: config.instanceIdentity,
              },
              heartbeatTimeoutMs: config.heartbeatTimeoutMs,
              reconnectBaseMs: config.reconnectBaseMs,
              reconnectMaxMs: config.reconnectMaxMs,
              log,
            },
            host,
          ),
      ),
    );
  }

  get state(): AgentState {
    if (this.stopped) return 'stopped';
    if (this.draining) return 'draining';
    return this.held.size > 0 ? 'connected' : 'connecting';
  }

  get activeStreams(): number {
    return this.handler.activeStreams;
  }

  // The links that are up now, one per replica.
  liveLinks(): LiveGatewayLink[] {
    return [...this.held].map(([gatewayId, link]) => ({ gatewayUrl: link.gatewayUrl.href, gatewayId }));
  }

  start(): void {
    for (const link of this.links) link.start();
  }

  private claim(link: GatewayLink, gatewayId: string): boolean {
    const holder = this.held.get(gatewayId);
    if (holder !== undefined && holder !== link) return false;
    this.held.set(gatewayId, link);
    return true;
  }

  private attach(link: GatewayLink, connection: Duplex, laneKey: string | undefined): ServerHttp2Session {
    let session: ServerHttp2Session | undefined;
    const capture = (s: ServerHttp2Session): void => {
      session = s;
    };
    // The server creates the session and announces it before emit() returns.
    this.h2.once('session', capture);
    this.h2.emit('connection', connection);
    this.h2.off('session', capture);
    if (session === undefined) throw new AgentError('INTERNAL', 'the HTTP/2 server made no session for the gateway link');
    if (laneKey !== undefined && link.gatewayId !== undefined && this.config.lanes > 0) {
      const lanes = new GatewayLanes(
        {
          gatewayUrl: link.gatewayUrl,
          gatewayId: link.gatewayId,
          laneKey,
          agentId: this.config.agentId,
          ca: this.ca,
          connectTimeoutMs: this.config.connectTimeoutMs,
          idleTarget: this.config.lanes,
          maxLanes: this.config.maxStreams,
          // A lane dialed before the gateway has finished describing the link is refused: try
          // again soon, not at the link's reconnect pace.
          reconnectBaseMs: LANE_RETRY_BASE_MS,
          reconnectMaxMs: Math.max(LANE_RETRY_BASE_MS, this.config.reconnectMaxMs),
          log: this.log,
        },
        { open: (lane, request) => this.handler.handleLane(lane, request) },
      );
      this.lanes.set(link, lanes);
      lanes.start();
    }
    this.emit('connected', link.gatewayId ?? '');
    return session;
  }

  private release(link: GatewayLink, reason: string): void {
    this.lanes.get(link)?.close();
    this.lanes.delete(link);
    for (const [gatewayId, holder] of this.held) {
      if (holder !== link) continue;
      this.held.delete(gatewayId);
      this.emit('disconnected', reason, gatewayId);
    }
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

  // SIGTERM: take nothing new (GOAWAY on every link tells each gateway at once), let active
  // streams finish within the grace period, then close the links and stop reconnecting.
  // SIGTERM. The agent leaves placement at once (every Pong now says draining, so the gateways
  // place no new build here) but keeps taking streams: the builds already placed here open new
  // connections as they go (buildx does, step by step), and refusing them would fail those builds.
  // Once no stream has been open for the quiet period (the builds are done), or the grace period
  // is over, it tells every gateway GOAWAY and exits.
  async drain(graceMs = this.config.drainGraceMs): Promise<void> {
    this.draining = true;
    await this.handler.drain(graceMs, Math.min(this.config.drainQuietMs, graceMs));
    for (const link of this.links) link.goaway();
    await this.close();
  }

  async close(): Promise<void> {
    this.stopped = true;
    for (const lanes of this.lanes.values()) lanes.close();
    this.lanes.clear();
    const closing = Promise.all(this.links.map((link) => link.close()));
    this.bridge.close();
    this.upstream.close();
    await closing;
  }
}
