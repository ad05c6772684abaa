import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import {
  FlowControl,
  Header,
  REPLICA_FORWARD_PATH,
  SocketDuplex,
  http2Settings,
  sessionReadAllowance,
  type Logger,
  type Platform,
} from '@slipway/proto';
import { GatewayError, toGatewayError } from './gatewayError.js';
import type { StreamRequest } from './agentLink.js';
import type { RoutingTable } from './routing/routingTable.js';
import type { TokenIssuer } from './tokenIssuer.js';
import type { StreamTarget } from './tunnelSplice.js';

export interface ReplicaForwarderOptions {
  table: RoutingTable;
  gatewayId: string;
  /** Where other replicas reach this one (announced in the routing table). */
  internalUrl: string;
  issuer: TokenIssuer;
  /** CA that replicas' certificates chain to; default: the system's. */
  ca: Buffer | undefined;
  /** How often this replica announces itself; it is forgotten after three missed announcements. */
  announceIntervalMs: number;
  connectTimeoutMs: number;
  log: Logger;
  now?: () => number;
}

const REPLICA_TOKEN_TTL_SEC = 600;
const REPLICA_LIST_MAX_AGE_MS = 1_000;
const REPLICA_PING_INTERVAL_MS = 5_000;
const REPLICA_PING_TIMEOUT_MS = 15_000;

// A builder whose link another replica holds, reached through that replica: streams are opened
// on an HTTP/2 session to it, and its answers follow the agent stream protocol (status, body,
// trailers), so the splice treats them exactly like an agent's.
class RemoteBuilder implements StreamTarget {
  constructor(
    readonly agentId: string,
    private readonly replicaId: string,
    private readonly session: ClientHttp2Session,
    private readonly replicaToken: string,
    private readonly clientAuthorization: string,
    private readonly platform: Platform,
  ) {}

  get closed(): boolean {
    return this.session.closed || this.session.destroyed;
  }

  // The replica holding the link applies the agent's stream limit and reports it.
  hasCapacity(): boolean {
    return !this.closed;
  }

  openStream(request: StreamRequest): ClientHttp2Stream {
    if (this.closed) throw new GatewayError('AGENT_LOST', `replica ${this.replicaId} holding builder ${this.agentId} is gone`);
    return this.session.request({
      ':method': 'POST',
      ':path': REPLICA_FORWARD_PATH,
      authorization: `Bearer ${this.replicaToken}`,
      [Header.forwardedAuthorization]: this.clientAuthorization,
      [Header.builderId]: this.agentId,
      [Header.platform]: this.platform,
      [Header.streamId]: request.streamId,
      ...(request.session === undefined ? {} : { [Header.session]: request.session }),
    });
  }
}

// Replica-to-replica forwarding: any replica can route any build, and when the builder's link
// is on another replica the stream is carried there over an authenticated HTTP/2 connection
// (one per peer replica, reused), not redirected: the client keeps its one connection.
export class ReplicaForwarder {
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private replicas: { at: number; urls: Map<string, string> } | undefined;
  private token: { value: string; refreshAtMs: number } | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly options: ReplicaForwarderOptions) {
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => void this.announce(), options.announceIntervalMs);
    this.timer.unref();
  }

  async announce(): Promise<void> {
    if (this.closed) return;
    try {
      await this.options.table.announceReplica(this.options.gatewayId, this.options.internalUrl, this.now(), this.options.announceIntervalMs * 3);
    } catch (err) {
      this.options.log.warn('cannot announce this replica', { reason: toGatewayError(err).message });
    }
  }

  /**
   * A target for a builder whose link another replica holds, or undefined when no live replica
   * holds one.
   */
  async target(agentId: string, platform: Platform, clientAuthorization: string): Promise<StreamTarget | undefined> {
    const builder = await this.options.table.getBuilder(agentId, platform);
    const holders = (builder?.gatewayIds ?? []).filter((g) => g !== this.options.gatewayId);
    if (holders.length === 0) return undefined;
    const urls = await this.replicaUrls();
    let lastError: GatewayError | undefined;
    for (const replicaId of holders) {
      const url = urls.get(replicaId);
      if (url === undefined) continue;
      try {
        const session = await this.session(url);
        return new RemoteBuilder(agentId, replicaId, session, await this.replicaToken(), clientAuthorization, platform);
      } catch (err) {
        lastError = toGatewayError(err);
        this.options.log.warn('cannot reach replica', { replicaId, url, reason: lastError.message });
      }
    }
    if (lastError) throw new GatewayError('AGENT_LOST', `builder ${agentId} is held by replica(s) ${holders.join(', ')}, none reachable: ${lastError.message}`);
    return undefined;
  }

  private async replicaUrls(): Promise<Map<string, string>> {
    const nowMs = this.now();
    if (!this.replicas || nowMs - this.replicas.at > REPLICA_LIST_MAX_AGE_MS) {
      this.replicas = { at: nowMs, urls: await this.options.table.listReplicas(nowMs) };
    }
    return this.replicas.urls;
  }

  private async replicaToken(): Promise<string> {
    const nowMs = this.now();
    if (!this.token || nowMs > this.token.refreshAtMs) {
      const value = await this.options.issuer.issueReplicaToken(this.options.gatewayId, REPLICA_TOKEN_TTL_SEC);
      this.token = { value, refreshAtMs: nowMs + (REPLICA_TOKEN_TTL_SEC * 1000) / 2 };
    }
    return this.token.value;
  }

  private session(url: string): Promise<ClientHttp2Session> {
    let pending = this.sessions.get(url);
    if (!pending) {
      pending = this.connect(url);
      this.sessions.set(url, pending);
      const forget = (): void => {
        if (this.sessions.get(url) === pending) this.sessions.delete(url);
      };
      pending.then((s) => s.once('close', forget), forget);
    }
    return pending;
  }

  private async connect(url: string): Promise<ClientHttp2Session> {
    if (this.closed) throw new GatewayError('DRAINING', 'gateway is shutting down');
    const target = new URL(url);
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({
        host: target.hostname,
        port: Number(target.port || 443),
        servername: net.isIP(target.hostname) ? undefined : target.hostname,
        ca: this.options.ca,
        ALPNProtocols: ['h2'],
      });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new GatewayError('AGENT_LOST', `no TLS connection to replica ${url} within ${this.options.connectTimeoutMs} ms`));
      }, this.options.connectTimeoutMs);
      s.on('error', (err) => {
        clearTimeout(timer);
        reject(new GatewayError('AGENT_LOST', `cannot connect to replica ${url}: ${err.message}`, { cause: err }));
      });
      s.once('secureConnect', () => {
        clearTimeout(timer);
        if (s.alpnProtocol !== 'h2') {
          s.destroy();
          reject(new GatewayError('AGENT_PROTOCOL', `replica ${url} did not negotiate HTTP/2 (got '${s.alpnProtocol || 'nothing'}')`));
          return;
        }
        resolve(s);
      });
    });
    socket.setNoDelay(true);
    // Both ends are native HTTP/2 sessions otherwise; this end keeps reading while it writes so
    // bulk data both ways cannot deadlock the connection (see proto/src/socketDuplex.ts).
    const session = http2.connect(url, {
      createConnection: () => new SocketDuplex(socket, sessionReadAllowance(FlowControl.sessionWindowBytes)),
      settings: http2Settings(),
      maxSessionMemory: FlowControl.maxSessionMemoryMiB,
    });
    session.on('error', (err) => this.options.log.warn('replica session failed', { url, reason: err.message }));
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', (err) => reject(new GatewayError('AGENT_LOST', `HTTP/2 to replica ${url} failed: ${err.message}`)));
    });
    session.setLocalWindowSize(FlowControl.sessionWindowBytes);
    // Liveness: a replica that vanishes without closing its socket (power loss, a partition)
    // must not hold streams forever. PINGs are not flow-controlled, so busy streams cannot
    // delay their acks much.
    let outstandingSince: number | undefined;
    const ping = setInterval(() => {
      if (session.destroyed) return;
      const nowMs = this.now();
      if (outstandingSince !== undefined) {
        if (nowMs - outstandingSince > REPLICA_PING_TIMEOUT_MS) {
          session.destroy(new Error(`replica ${url} did not answer a PING for ${nowMs - outstandingSince} ms`));
        }
        return;
      }
      outstandingSince = nowMs;
      session.ping(() => {
        outstandingSince = undefined;
      });
    }, REPLICA_PING_INTERVAL_MS);
    ping.unref();
    session.once('close', () => clearInterval(ping));
    return session;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const pending of this.sessions.values()) pending.then((s) => s.destroy(), () => {});
    this.sessions.clear();
  }
}
