import http2, { type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import http, { type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  AGENT_CONNECT_PATH,
  AGENT_LANE_PATH,
  AGENT_UPGRADE_PROTOCOL,
  LANE_UPGRADE_PROTOCOL,
  FlowControl,
  Header,
  TUNNEL_PATH,
  REPLICA_FORWARD_PATH,
  WireErrorHttpStatus,
  http2Settings,
  isPlatform,
  type Logger,
  type Platform,
} from '@slipway/proto';
import type { FastifyInstance } from 'fastify';
import { GatewayError, toGatewayError, wireCodeOf } from './gatewayError.js';
import type { Authenticator } from './authenticator.js';
import { AgentLink } from './agentLink.js';
import { AgentPool } from './agentPool.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { TunnelService } from './tunnelService.js';
import { VerifiedTokenCache } from './verifiedTokenCache.js';
import { Http2ClientEnd, refuseHttp2 } from './http2ClientEnd.js';
import { WebSocketClientEnd } from './webSocketClientEnd.js';
import { createHttpApi } from './httpApi.js';
import type { RoutingTable } from './routing/routingTable.js';
import type { TokenIssuer } from './tokenIssuer.js';
import { BuildService } from './buildService.js';
import { BuilderRegistry } from './builderRegistry.js';
import { registerBuildApi } from './buildApi.js';
import { ReplicaForwarder } from './replicaForwarder.js';
import { registerAdminApi } from './adminApi.js';
import type { IdentityServices } from './identity/identityServices.js';
import type { AgentAdmission } from './agentAdmission.js';
import { AbuseGuard, DEFAULT_ABUSE_LIMITS, type AbuseLimits } from './abuseGuard.js';
import { AuditLog } from './auditLog.js';

export interface GatewayOptions {
  gatewayId: string;
  host: string;
  port: number;
  tls: { key: string | Buffer; cert: string | Buffer };
  auth: Authenticator;
  parseBearer: (header: string | undefined) => string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  agentDescribeTimeoutMs: number;
  maxHeaderBytes: number;
  log: Logger;
  /** The shared routing table (Redis), or an in-process one for a single replica. */
  table: RoutingTable;
  /** Signs build tokens; every replica must hold the same key (its public half verifies them). */
  buildTokenIssuer: TokenIssuer;
  placement: PlacementOptions;
  /** Where other replicas reach this one (default https://<host>:<port> as listened). */
  internalUrl?: string;
  /** CA for other replicas' certificates (default: the system's). */
  internalCa?: Buffer;
  /** Projects, tokens and trust policies (the admin API), and the revoked token ids every use is checked against. */
  identity?: IdentityServices;
  /** Rate limits and stream quotas (default DEFAULT_ABUSE_LIMITS). */
  limits?: AbuseLimits;
  /** Receives the audit log of authentication decisions, one JSON line each (default: discarded). */
  auditSink?: (line: string) => void;
  /** Checks an agent's instance identity against the fleet; without it agents are admitted on their join token. */
  admission?: AgentAdmission;
  /** Whether the fleet can bring up builders of a platform on demand; default: it cannot (local agents). */
  canProvision?: (platform: Platform) => boolean;
  /** An agent's idle lane older than this is retired (default 20 s). */
  laneIdleMaxMs?: number;
  /** Idle lanes kept per agent (default 16). */
  maxIdleLanes?: number;
}

export interface PlacementOptions {
  /** A build waits this long for its project's busy or starting builders, then spills to the pool. */
  spillAfterMs: number;
  /** A build whose heartbeats stop for this long releases its builders. */
  buildLeaseMs: number;
  buildHeartbeatIntervalMs: number;
  buildTokenTtlSec: number;
  /** A builder is placeable this long after a replica last renewed it. */
  builderLeaseMs: number;
}

// HPACK's accounting (RFC 7541 4.1): each field costs its name, its value and 32 bytes.
function headerBytes(rawHeaders: readonly string[]): number {
  let n = 0;
  for (const h of rawHeaders) n += h.length + 16;
  return n;
}

// Writes a complete HTTP/1.1 error response on a socket that asked to upgrade, then closes it.
function refuseUpgrade(socket: Duplex, error: GatewayError): void {
  const code = wireCodeOf(error.code);
  const body = JSON.stringify({ error: { code, message: error.message } });
  const status = WireErrorHttpStatus[code];
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `${Header.errorCode}: ${code}\r\nConnection: close\r\n\r\n${body}`,
  );
}

// One TLS port for everything: ALPN h2 carries the API and tunnel streams, HTTP/1.1 carries the
// API, WebSocket tunnels and agent links (an Upgrade to slipway-agent/1 after which the agent
// serves HTTP/2 to us).
export class Gateway {
  readonly pool = new AgentPool();
  readonly metrics: GatewayMetrics;
  readonly builds: BuildService;
  private readonly registry: BuilderRegistry;
  readonly guard: AbuseGuard;
  private forwarder: ReplicaForwarder | undefined;
  private readonly tunnels: TunnelService;
  private readonly app: FastifyInstance;
  private server!: tls.Server;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
  private readonly connections = new Set<Duplex>();
  private draining = false;

  constructor(private readonly options: GatewayOptions) {
    this.metrics = createGatewayMetrics(
      () => {
        const counts = new Map<string, number>();
        for (const link of this.pool.list()) {
          const key = `${link.platform}|${link.draining ? 'draining' : 'ready'}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
        return [...counts].map(([key, n]) => {
          const [platform, state] = key.split('|');
          return [{ platform: platform!, state: state! }, n];
        });
      },
      () => this.tunnels.activeByPlatform(),
    );
    this.guard = new AbuseGuard(options.limits ?? DEFAULT_ABUSE_LIMITS, new AuditLog({ write: options.auditSink ?? (() => {}) }));
    const revocations = options.identity?.revocations;
    const clientAuth = new VerifiedTokenCache(options.auth, {
      maxEntries: 4096,
      maxAgeMs: 60_000,
      isRevoked: revocations ? (id) => revocations.isRevoked(id) : undefined,
    });
    this.builds = new BuildService({
      table: options.table,
      issuer: options.buildTokenIssuer,
      metrics: this.metrics,
      log: options.log,
      spillAfterMs: options.placement.spillAfterMs,
      buildLeaseMs: options.placement.buildLeaseMs,
      buildHeartbeatIntervalMs: options.placement.buildHeartbeatIntervalMs,
      buildTokenTtlSec: options.placement.buildTokenTtlSec,
      canProvision: options.canProvision ?? (() => false),
      isolateUntrusted: options.identity?.isolateUntrusted,
    });
    this.registry = new BuilderRegistry({
      table: options.table,
      gatewayId: options.gatewayId,
      leaseMs: options.placement.builderLeaseMs,
      renewIntervalMs: Math.max(50, Math.floor(options.placement.builderLeaseMs / 3)),
      log: options.log,
    });
    this.tunnels = new TunnelService(clientAuth, this.pool, this.builds, (agentId, request) => this.forwarder?.target(agentId, request.platform, request.authorization) ?? Promise.resolve(undefined), this.metrics, options.log, options.parseBearer, this.guard);
    this.app = createHttpApi({
      register: (app) => {
        registerBuildApi(app, { builds: this.builds, auth: clientAuth, parseBearer: options.parseBearer, metrics: this.metrics, log: options.log, guard: this.guard });
        const identity = options.identity;
        if (identity) {
          registerAdminApi(app, {
            admin: identity.admin,
            verifyAdmin: identity.verifyAdmin,
            parseBearer: options.parseBearer,
            publicKeys: identity.publicKeys,
            metrics: this.metrics,
            guard: this.guard,
            oidc: identity.oidc,
          });
        }
      },
      serverFactory: (handler) => this.createServer(handler as (req: unknown, res: unknown) => void),
      metrics: this.metrics.registry,
      isDraining: () => this.draining,
      isReady: () =>
        this.draining ? { ready: false, reason: 'draining' } : { ready: true, reason: `${this.pool.list().length} agent(s) connected` },
      maxHeaderBytes: options.maxHeaderBytes,
    });
  }

  // The gateway terminates TLS itself and hands each connection to an HTTP/2 or an HTTP/1.1
  // server by ALPN. Its HTTP/2 sessions stay native (the gateway carries every byte twice and is
  // the one shared process); the peer at the other end of each connection, CLI or agent, is the
  // one that keeps reading while it writes, which is all it takes to rule out the deadlock that
  // two Node sessions can otherwise fall into (see proto/src/socketDuplex.ts).
  private createServer(fastifyHandler: (req: unknown, res: unknown) => void): tls.Server {
    const h2 = http2.createServer({
      settings: { ...http2Settings(), maxHeaderListSize: this.options.maxHeaderBytes },
      maxSessionMemory: FlowControl.maxSessionMemoryMiB,
      maxHeaderListPairs: 128,
    });
    h2.on('request', fastifyHandler);
    // Registering 'request' made Node add its compatibility 'stream' listener. Tunnel streams
    // must not pass through it (it would buffer and pause them), so it is wrapped: tunnels are
    // taken here, everything else goes on to the compatibility layer and fastify.
    const compat = h2.listeners('stream') as Array<(...args: unknown[]) => void>;
    h2.removeAllListeners('stream');
    h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
      stream.on('error', () => {});
      if (headers[':path'] === TUNNEL_PATH) {
        this.handleHttp2Tunnel(stream, headers, rawHeaders);
        return;
      }
      if (headers[':path'] === REPLICA_FORWARD_PATH) {
        this.handleForwardedStream(stream, headers);
        return;
      }
      for (const listener of compat) listener.call(h2, stream, headers, flags, rawHeaders);
    });
    h2.on('session', (session) => {
      session.on('error', () => {});

      // Node leaves the session-level receive window at 64 KiB whatever the settings say.
      session.on('localSettings', () => {
        if (!session.destroyed) session.setLocalWindowSize(FlowControl.sessionWindowBytes);
      });
    });
    // Over its header limit, the HTTP/1.1 parser answers 431 by itself.
    const h1 = http.createServer({ maxHeaderSize: this.options.maxHeaderBytes }, fastifyHandler);
    h1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head));

    const server = tls.createServer({
      key: this.options.tls.key,
      cert: this.options.tls.cert,
      ALPNProtocols: ['h2', 'http/1.1'],
      // AES-128-GCM first: as safe for this use and markedly cheaper per byte than AES-256, and
      // every byte of every build crosses two TLS legs on the gateway.
      ciphers: `TLS_AES_128_GCM_SHA256:${tls.DEFAULT_CIPHERS}`,
      honorCipherOrder: true,
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      socket.on('error', () => {});
      socket.setNoDelay(true);
      this.connections.add(socket);
      socket.once('close', () => this.connections.delete(socket));
      if (socket.alpnProtocol === 'h2') h2.emit('connection', socket);
      else h1.emit('connection', socket);
    });
    server.on('tlsClientError', (err) => this.options.log.debug('TLS handshake failed', { reason: err.message }));
    this.server = server;
    return server;
  }

  private drainingHeaders(): Record<string, string> {
    return this.draining ? { [Header.draining]: '1' } : {};
  }

  async listen(): Promise<AddressInfo> {
    await this.app.listen({ host: this.options.host, port: this.options.port });
    const address = this.server.address() as AddressInfo;
    const host = this.options.host === '0.0.0.0' || this.options.host === '::' ? '127.0.0.1' : this.options.host;
    this.forwarder = new ReplicaForwarder({
      table: this.options.table,
      gatewayId: this.options.gatewayId,
      internalUrl: this.options.internalUrl ?? `https://${host.includes(':') ? `[${host}]` : host}:${address.port}`,
      issuer: this.options.buildTokenIssuer,
      ca: this.options.internalCa,
      announceIntervalMs: Math.max(100, Math.floor(this.options.placement.builderLeaseMs / 3)),
      connectTimeoutMs: 5_000,
      log: this.options.log,
    });
    await this.forwarder.announce();
    return address;
  }

  private handleHttp2Tunnel(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    if (headers[':method'] !== 'POST') {
      refuseHttp2(stream, new GatewayError('BAD_REQUEST', `tunnel streams are opened with POST; got ${headers[':method']}`));
      return;
    }
    if (headerBytes(rawHeaders) > this.options.maxHeaderBytes) {
      refuseHttp2(stream, new GatewayError('HEADERS_TOO_LARGE', `request headers exceed ${this.options.maxHeaderBytes} bytes`));
      return;
    }
    // Hold the client's bytes (within the stream window) until an agent stream takes them.
    stream.pause();
    const source = stream.session?.socket?.remoteAddress;
    this.tunnels
      .authorize(headers, 'h2', source)
      .then(async (request) => this.tunnels.run(new Http2ClientEnd(stream, () => this.drainingHeaders()), request, await this.tunnels.route(request), 'h2', source))
      .catch((err: unknown) => refuseHttp2(stream, toGatewayError(err)));
  }

  // Another replica forwards a client's stream for a builder whose link this replica holds. The
  // replica proves itself with a replica token; the client's own token is verified again here,
  // so a forward can reach nothing the client could not reach directly.
  private handleForwardedStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.pause();
    const forwarded = headers[Header.forwardedAuthorization];
    this.options.auth
      .verifyReplica(this.options.parseBearer(headers.authorization))
      .then(async (replica) => {
        const request = await this.tunnels.authorize({ ...headers, authorization: Array.isArray(forwarded) ? forwarded[0] : forwarded }, 'forward', replica.gatewayId);
        const target = await this.tunnels.route(request, { localOnly: true });
        if (headers[Header.builderId] !== target.agentId) {
          throw new GatewayError('FORBIDDEN', `replica ${replica.gatewayId} asked for builder ${String(headers[Header.builderId]).slice(0, 64)} but the build's builder is ${target.agentId}`);
        }
        await this.tunnels.run(new Http2ClientEnd(stream), request, target, 'forward', replica.gatewayId);
      })
      .catch((err: unknown) => refuseHttp2(stream, toGatewayError(err)));
  }

  private handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {});
    const path = (req.url ?? '').split('?')[0];
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    if (path === AGENT_CONNECT_PATH && upgrade === AGENT_UPGRADE_PROTOCOL) {
      this.handleAgentConnect(req, socket, head).catch((err: unknown) => {
        const error = toGatewayError(err);
        this.metrics.agentConnections.inc({ outcome: wireCodeOf(error.code) });
        this.options.log.warn('agent connection refused', { code: error.code, reason: error.message });
        if (!socket.destroyed) refuseUpgrade(socket, error);
      });
      return;
    }
    if (path === AGENT_LANE_PATH && upgrade === LANE_UPGRADE_PROTOCOL) {
      try {
        this.handleLane(req, socket, head);
        this.metrics.laneConnections.inc({ outcome: 'accepted' });
      } catch (err) {
        const error = toGatewayError(err);
        this.metrics.laneConnections.inc({ outcome: wireCodeOf(error.code) });
        refuseUpgrade(socket, error);
      }
      return;
    }
    if (path === TUNNEL_PATH && upgrade === 'websocket') {
      this.handleWebSocketTunnel(req, socket, head);
      return;
    }
    refuseUpgrade(
      socket,
      new GatewayError(
        'BAD_REQUEST',
        `cannot upgrade ${path} to '${upgrade}'; expected ${TUNNEL_PATH} with websocket, ${AGENT_CONNECT_PATH} with ${AGENT_UPGRADE_PROTOCOL} or ${AGENT_LANE_PATH} with ${LANE_UPGRADE_PROTOCOL}`,
      ),
    );
  }

  // A lane is admitted on the key this replica gave the agent's link, so it is cheap (no token to
  // verify) and can only join the link it was made for: a lane that a load balancer put on
  // another replica finds no link there and is refused.
  private handleLane(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const agentId = String(req.headers[Header.agentId] ?? '');
    const key = String(req.headers[Header.laneKey] ?? '');
    // Through a load balancer a lane may reach another replica than the one whose link it serves:
    // say so, rather than calling its key wrong.
    const meantFor = req.headers[Header.gatewayId];
    if (typeof meantFor === 'string' && meantFor !== this.options.gatewayId) {
      throw new GatewayError('CONFLICT', `lane of agent '${agentId.slice(0, 64)}' is for gateway ${meantFor.slice(0, 64)} but reached gateway ${this.options.gatewayId}`);
    }
    const link = this.pool.get(agentId);
    if (link === undefined) {
      throw new GatewayError('CONFLICT', `agent '${agentId.slice(0, 64)}' has no link to gateway ${this.options.gatewayId}; a lane joins the link of the replica it reached`);
    }
    const expected = Buffer.from(link.laneKey);
    const given = Buffer.from(key);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new GatewayError('UNAUTHENTICATED', `lane for agent '${agentId.slice(0, 64)}' presented a wrong ${Header.laneKey}; expected the key from this replica's 101`);
    }
    // Throws NO_CAPACITY before anything is written when the agent holds too many.
    link.lanes.add(socket, () => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${LANE_UPGRADE_PROTOCOL}\r\n\r\n`);
      if (head.length > 0) socket.unshift(head);
    });
  }

  private handleWebSocketTunnel(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const source = req.socket.remoteAddress;
    this.tunnels
      .authorize(req.headers, 'websocket', source)
      .then(async (request) => {
        const link = await this.tunnels.route(request);
        this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
          const end = new WebSocketClientEnd(ws);
          this.tunnels.run(end, request, link, 'websocket', source).catch((err: unknown) => end.fail(toGatewayError(err)));
        });
      })
      .catch((err: unknown) => refuseUpgrade(socket, toGatewayError(err)));
  }

  private async handleAgentConnect(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (this.draining) throw new GatewayError('DRAINING', `gateway ${this.options.gatewayId} is shutting down; reconnect elsewhere`);
    const single = (name: string): string | undefined => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    // Token, claimed id and platform, and instance identity: one authentication decision, audited as one.
    const { identity, platform, admitted } = await this.guard.authenticate(
      { path: 'agent', source: req.socket.remoteAddress, transport: 'https' },
      async () => {
        const identity = await this.options.auth.verifyAgent(this.options.parseBearer(req.headers.authorization));
        const platform = single(Header.agentPlatform) ?? '';
        if (!isPlatform(platform)) {
          throw new GatewayError('UNKNOWN_PLATFORM', `header ${Header.agentPlatform} is '${platform.slice(0, 64)}'; expected linux/amd64 or linux/arm64`);
        }
        const admitted = this.options.admission
          ? await this.options.admission.admit({
              token: identity,
              platform,
              instanceDocument: single(Header.instanceDocument),
              instanceSignature: single(Header.instanceSignature),
            })
          : undefined;
        // Who the agent is: its token's agent id, or the instance a fleet join token admitted.
        const agentId = admitted?.agentId ?? identity.agentId;
        const claimedId = single(Header.agentId);
        if (claimedId !== undefined && claimedId !== agentId) {
          throw new GatewayError('FORBIDDEN', `agent token is for '${agentId}' but the agent says it is '${claimedId.slice(0, 64)}'`);
        }
        return { identity: { ...identity, agentId }, platform, admitted };
      },
      ({ identity }) => ({ agentId: identity.agentId }),
    );
    // HTTP/2 must not take the socket over while the 101 is still being written: its native
    // session would receive the completion of a write it never made (and Node aborts).
    const laneKey = randomBytes(24).toString('base64url');
    await new Promise<void>((resolve, reject) =>
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${AGENT_UPGRADE_PROTOCOL}\r\n` +
          `${Header.gatewayId}: ${this.options.gatewayId}\r\n${Header.laneKey}: ${laneKey}\r\n\r\n`,
        (err) =>
        err ? reject(new GatewayError('AGENT_LOST', `agent went away during the upgrade: ${err.message}`)) : resolve(),
      ),
    );
    if (head.length > 0) socket.unshift(head);
    const link = new AgentLink(socket, {
      gatewayId: this.options.gatewayId,
      agentId: identity.agentId,
      fleet: identity.fleet,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.options.heartbeatTimeoutMs,
      describeTimeoutMs: this.options.agentDescribeTimeoutMs,
      laneKey,
      maxIdleLanes: this.options.maxIdleLanes ?? 16,
      laneIdleMaxMs: this.options.laneIdleMaxMs ?? 20_000,
      log: this.options.log,
    });
    try {
      await link.start(platform);
      // The instance id that counts is the one the signed document proved, not what Describe says.
      if (admitted?.instanceId !== undefined) {
        if (link.instanceId !== undefined && link.instanceId !== admitted.instanceId) {
          throw new GatewayError('FORBIDDEN', `agent ${identity.agentId} describes instance ${link.instanceId} but its identity document is for ${admitted.instanceId}`);
        }
        link.instanceId = admitted.instanceId;
      }
    } catch (err) {
      const error = toGatewayError(err);
      link.close(error);
      throw error;
    }
    this.pool.add(link);
    try {
      await this.registry.add(link);
    } catch (err) {
      const error = toGatewayError(err);
      link.close(error);
      throw error;
    }
    this.metrics.agentConnections.inc({ outcome: 'accepted' });
    this.options.log.info('agent connected', { agentId: link.agentId, platform: link.platform, maxStreams: link.maxStreams });
  }

  // Stops taking new streams and agents, then closes everything once active streams finish or
  // the grace period runs out.
  async close(graceMs = 0): Promise<void> {
    this.draining = true;
    // Draining serves on: tunnels still route (this replica holds its agents' links until the
    // end) and new connections are served until the load balancer sees /readyz fail. Every answer
    // now carries `slipway-draining`, which tells the CLI to open its next streams on a new
    // connection, which the load balancer gives to another replica. (A GOAWAY would say the same,
    // but streams crossing it on the wire are refused, and the client cannot know whether their
    // first bytes were taken.) New builds are no longer placed through this replica's links, and
    // new agent links are refused.
    this.registry.close();
    await this.registry.unlinkAll();
    this.forwarder?.close();
    this.options.identity?.revocations.close();
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && this.tunnels.activeByPlatform().some(([, n]) => n > 0)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    this.pool.closeAll(new GatewayError('AGENT_LOST', `gateway ${this.options.gatewayId} shut down`));
    for (const ws of this.wss.clients) ws.terminate();
    const closing = this.app.close();
    // Established connections (HTTP/2 sessions, HTTP/1.1 keep-alive) keep close() waiting.
    for (const socket of this.connections) socket.destroy();
    await closing;
  }
}
