import http2, { type ServerHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { FlowControl, SocketDuplex, sessionReadAllowance, type Logger } from '@slipway/proto';
import { toAgentError } from './agentError.js';
import { Backoff } from './backoff.js';
import { dialGateway, type DialedGateway, type GatewayDialOptions } from './gatewayDialer.js';

export interface GatewayLinkOptions {
  gatewayUrl: URL;
  /** Names this link in logs: several links may go through one URL. */
  slot: string;
  dial: Omit<GatewayDialOptions, 'gatewayUrl' | 'signal'>;
  heartbeatTimeoutMs: number;
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  log: Logger;
}

// What the agent lends each of its links. Everything behind a link (the HTTP/2 server, the tunnel
// streams, the control plane) is shared; only the connection and its liveness are the link's.
export interface GatewayLinkHost {
  // Called as soon as a dial is answered. False when another live link already reaches that
  // replica: the gateway keeps one link per agent per replica, so a second one would replace the
  // first rather than add to it.
  claim(link: GatewayLink, gatewayId: string): boolean;
  // Serves HTTP/2 on the link's connection; the link is up once this returns. With a lane key the
  // replica also takes lanes (proto laneFrames.ts).
  attach(link: GatewayLink, connection: Duplex, laneKey: string | undefined): ServerHttp2Session;
  // The claimed link is gone (never called for a link whose claim was refused).
  release(link: GatewayLink, reason: string): void;
}

// One link to a gateway replica and its whole life: dial, serve HTTP/2 on the dialed connection
// until it dies, back off with full jitter, dial again. Each link backs off on its own, so a dead
// replica slows only the link that pointed at it.
export class GatewayLink {
  readonly gatewayUrl: URL;
  /** The replica at the other end while the link is up. */
  gatewayId: string | undefined;
  private readonly backoff: Backoff;
  private readonly stop = new AbortController();
  private draining = false;
  private socket: tls.TLSSocket | undefined;
  private session: ServerHttp2Session | undefined;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;

  constructor(
    private readonly options: GatewayLinkOptions,
    private readonly host: GatewayLinkHost,
  ) {
    this.gatewayUrl = options.gatewayUrl;
    this.backoff = new Backoff(options.reconnectBaseMs, options.reconnectMaxMs);
  }

  get slot(): string {
    return this.options.slot;
  }

  start(): void {
    this.loop ??= this.run();
  }

  // Asks the gateway for nothing new (GOAWAY) and stops dialing: a draining agent takes no new
  // streams, so a fresh link would carry nothing.
  goaway(): void {
    this.draining = true;
    if (this.session && !this.session.destroyed) this.session.goaway(http2.constants.NGHTTP2_NO_ERROR);
    this.wakeUp?.();
  }

  async close(): Promise<void> {
    this.stop.abort();
    this.wakeUp?.();
    this.socket?.destroy();
    await this.loop;
  }

  private get stopping(): boolean {
    return this.stop.signal.aborted || this.draining;
  }

  private async run(): Promise<void> {
    const { log, gatewayUrl, slot } = this.options;
    while (!this.stopping) {
      let dialed: DialedGateway;
      try {
        dialed = await dialGateway({ ...this.options.dial, gatewayUrl, signal: this.stop.signal });
      } catch (err) {
        if (this.stopping) break;
        const error = toAgentError(err);
        log.warn('cannot connect to gateway', { slot, code: error.code, reason: error.message });
        await this.pause();
        continue;
      }
      if (this.stopping) {
        dialed.socket.destroy();
        break;
      }
      // A gateway that does not name itself (older than the header) is told apart by address
      // only, so links through one load-balanced URL cannot spread over its replicas.
      const gatewayId = dialed.gatewayId ?? `unnamed@${gatewayUrl.host}`;
      if (!this.host.claim(this, gatewayId)) {
        // Closed before the gateway has described us: it never takes this link into its pool.
        dialed.socket.destroy();
        log.info('gateway replica already linked; dropping this link', { slot, gatewayId });
        await this.pause();
        continue;
      }
      this.backoff.reset();
      const reason = await this.serve(dialed.socket, gatewayId, dialed.laneKey);
      log.warn('gateway link lost', { slot, gatewayId, reason });
      this.host.release(this, reason);
      await this.pause();
    }
  }

  private pause(): Promise<void> {
    if (this.stopping) return Promise.resolve();
    const delayMs = this.backoff.nextDelayMs();
    this.options.log.info('reconnecting', { slot: this.options.slot, delayMs });
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wakeUp?.(), delayMs);
      this.wakeUp = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        resolve();
      };
    });
  }

  // Serves HTTP/2 on the dialed connection; resolves with the reason once the link is gone.
  private serve(socket: tls.TLSSocket, gatewayId: string, laneKey: string | undefined): Promise<string> {
    return new Promise((resolve) => {
      const { heartbeatTimeoutMs } = this.options;
      this.socket = socket;
      let reason = 'connection closed';
      socket.on('error', (err) => {
        reason = err.message;
      });
      // Evidence of life: PING frames from the gateway, and acks of the ones we send ourselves.
      // Neither is flow-controlled, so busy streams cannot hold them back, and both belong to this
      // connection alone (gRPC heartbeats all reach one shared control server).
      let lastLifeAtMs = Date.now();
      let pingOutstanding = false;
      const watchdog = setInterval(() => {
        const silentMs = Date.now() - lastLifeAtMs;
        if (silentMs > heartbeatTimeoutMs) {
          reason = `no sign of life from the gateway for ${silentMs} ms (limit ${heartbeatTimeoutMs} ms)`;
          socket.destroy();
          return;
        }
        const session = this.session;
        if (session && !session.destroyed && !pingOutstanding) {
          pingOutstanding = true;
          session.ping((err) => {
            pingOutstanding = false;
            if (!err) lastLifeAtMs = Date.now();
          });
        }
      }, Math.max(50, Math.floor(heartbeatTimeoutMs / 4)));
      socket.once('close', () => {
        clearInterval(watchdog);
        this.session = undefined;
        this.socket = undefined;
        this.gatewayId = undefined;
        resolve(reason);
      });
      this.gatewayId = gatewayId;
      // Through SocketDuplex: the gateway's session is native and stops reading while it writes;
      // this end must keep reading or bulk data both ways could deadlock the link. It also keeps
      // a socket that carried HTTP/1.1 (the Upgrade) away from a native HTTP/2 session.
      try {
        this.session = this.host.attach(this, new SocketDuplex(socket, sessionReadAllowance(FlowControl.sessionWindowBytes)), laneKey);
      } catch (err) {
        reason = `cannot serve HTTP/2 on the link: ${toAgentError(err).message}`;
        socket.destroy();
        return;
      }
      this.session.on('ping', () => {
        lastLifeAtMs = Date.now();
      });
      if (this.draining) this.session.goaway(http2.constants.NGHTTP2_NO_ERROR);
      this.options.log.info('connected to gateway', { slot: this.options.slot, gatewayId, agentId: this.options.dial.agentId, platform: this.options.dial.platform });
    });
  }
}
