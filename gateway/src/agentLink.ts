import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  AGENT_STREAM_PATH,
  FlowControl,
  Header,
  agentControlMethods,
  http2Settings,
  isPlatform,
  type AgentDescription,
  type Platform,
  type Pong,
} from '@slipway/proto';
import { GatewayError } from './gatewayError.js';
import { bidiCall, unaryCall, type BidiCall } from './grpcCall.js';
import type { Logger } from '@slipway/proto';
import { AgentLanes } from './agentLanes.js';
import type { ClientEnd, SpliceResult } from './tunnelSplice.js';

export interface AgentLinkOptions {
  gatewayId: string;
  agentId: string;
  fleet: string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  describeTimeoutMs: number;
  /** The secret the agent opens lanes with, given to it on the link's 101. */
  laneKey: string;
  /** Idle lanes kept per agent; a lane idle longer than laneIdleMaxMs is retired. */
  maxIdleLanes: number;
  laneIdleMaxMs: number;
  log: Logger;
}

export interface StreamRequest {
  streamId: string;
  project: string;
  platform: Platform;
  /** A BuildKit session the stream attaches (the header's JSON, validated): see proto's sessionAttachment.ts. */
  session?: string;
}

// The gateway's side of one agent connection: after the upgrade the agent serves HTTP/2 and the
// gateway is its client, so opening a stream toward the agent costs no round trip of its own.
export class AgentLink extends EventEmitter<{ closed: [GatewayError]; draining: [] }> {
  readonly agentId: string;
  readonly fleet: string;
  platform: Platform = 'linux/amd64';
  maxStreams = 0;
  /** Builds at once (placement capacity), from Describe; agents too old to say get 1. */
  maxBuilds = 1;
  instanceId: string | undefined;
  description: AgentDescription | undefined;
  activeStreams = 0;
  draining = false;
  /** Data connections the agent opened beside the link; streams prefer them (proto laneFrames.ts). */
  readonly lanes: AgentLanes;
  private readonly session: ClientHttp2Session;
  private heartbeat: BidiCall<{ seq: number; sentUnixMs: number }> | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lastPongAtMs = Date.now();
  private seq = 0;
  private closedWith: GatewayError | undefined;

  constructor(socket: Duplex, private readonly options: AgentLinkOptions) {
    super();
    this.agentId = options.agentId;
    this.fleet = options.fleet;
    // More lanes than the agent's stream limit could never all be busy; none before it has described itself.
    this.lanes = new AgentLanes({ agentId: options.agentId, maxLanes: () => this.maxStreams, maxIdle: options.maxIdleLanes, idleMaxMs: options.laneIdleMaxMs });
    this.session = http2.connect(`http://agent.${encodeURIComponent(options.agentId)}.invalid`, {
      // Native: the agent's end keeps reading while it writes (SocketDuplex), so this session
      // pausing its input during its own writes cannot deadlock the link.
      createConnection: () => socket,
      settings: http2Settings(),
      maxSessionMemory: FlowControl.maxSessionMemoryMiB,
      maxHeaderListPairs: 256,
    });
    this.session.on('error', (err) => this.close(new GatewayError('AGENT_LOST', `link to agent ${this.agentId} failed: ${err.message}`, { cause: err })));
    this.session.on('close', () => this.close(new GatewayError('AGENT_LOST', `agent ${this.agentId} disconnected`)));
    this.session.on('goaway', () => {
      // A GOAWAY from the agent is how it says it is shutting down: take nothing new.
      this.markDraining();
    });
    this.session.on('connect', () => this.session.setLocalWindowSize(FlowControl.sessionWindowBytes));
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  // Asks the agent what it is, checks it against what its token and headers claimed, and starts
  // the heartbeat. The link takes streams only after this resolves.
  async start(claimedPlatform: Platform): Promise<void> {
    const methods = agentControlMethods();
    const description = await unaryCall(this.session, methods.describe, { gatewayId: this.options.gatewayId }, this.options.describeTimeoutMs);
    if (!isPlatform(description.platform)) {
      throw new GatewayError('UNKNOWN_PLATFORM', `agent ${this.agentId} describes platform '${description.platform}'; expected linux/amd64 or linux/arm64`);
    }
    if (description.platform !== claimedPlatform) {
      throw new GatewayError('AGENT_PROTOCOL', `agent ${this.agentId} connected as ${claimedPlatform} but describes itself as ${description.platform}`);
    }
    if (description.agentId !== this.agentId) {
      throw new GatewayError('FORBIDDEN', `agent token is for '${this.agentId}' but the agent describes itself as '${description.agentId}'`);
    }
    this.description = description;
    this.platform = description.platform;
    this.maxStreams = description.maxStreams;
    this.maxBuilds = description.maxBuilds > 0 ? description.maxBuilds : 1;
    this.instanceId = description.instanceId || undefined;
    this.startHeartbeat();
  }

  // Liveness rides on HTTP/2 PING frames: they are not flow-controlled and nghttp2 sends them
  // ahead of queued DATA, so hundreds of busy streams cannot delay them the way they delay any
  // stream's messages (a round of one frame per stream can take seconds on a loaded link). They
  // travel inside the upgraded connection, so to any proxy on the way they are payload, like
  // everything else. The gRPC Heartbeat carries the agent's load and draining state, and its
  // messages count as signs of life too.
  private startHeartbeat(): void {
    this.lastPongAtMs = Date.now();
    let pingOutstanding = false;
    this.heartbeat = bidiCall(this.session, agentControlMethods().heartbeat, {
      onMessage: (pong: Pong) => {
        this.lastPongAtMs = Date.now();
        if (pong.draining) this.markDraining();
      },
      onEnd: (err) => {
        if (!this.closed) this.close(err ?? new GatewayError('AGENT_LOST', `agent ${this.agentId} ended its heartbeat`));
      },
    });
    const tick = (): void => {
      const silentMs = Date.now() - this.lastPongAtMs;
      if (silentMs > this.options.heartbeatTimeoutMs) {
        this.close(new GatewayError('AGENT_LOST', `agent ${this.agentId} sent no heartbeat for ${silentMs} ms (limit ${this.options.heartbeatTimeoutMs} ms)`));
        return;
      }
      this.heartbeat?.send({ seq: ++this.seq, sentUnixMs: Date.now() });
      if (!pingOutstanding && !this.session.destroyed) {
        pingOutstanding = true;
        this.session.ping((err) => {
          pingOutstanding = false;
          if (!err) this.lastPongAtMs = Date.now();
        });
      }
    };
    tick();
    this.heartbeatTimer = setInterval(tick, this.options.heartbeatIntervalMs);
  }

  private markDraining(): void {
    if (this.draining) return;
    this.draining = true;
    this.emit('draining');
  }

  hasCapacity(): boolean {
    // A draining agent still takes streams of builds already placed on it (placement no longer
    // sends it new ones); it says GOAWAY when it is done.
    return !this.closed && this.description !== undefined && this.activeStreams < this.maxStreams;
  }

  openStream(request: StreamRequest): ClientHttp2Stream {
    if (this.closed) throw new GatewayError('AGENT_LOST', `agent ${this.agentId} is gone`);
    const stream = this.session.request({
      ':method': 'POST',
      ':path': AGENT_STREAM_PATH,
      [Header.streamId]: request.streamId,
      [Header.project]: request.project,
      [Header.platform]: request.platform,
      ...(request.session === undefined ? {} : { [Header.session]: request.session }),
    });
    this.activeStreams++;
    stream.once('close', () => {
      this.activeStreams--;
    });
    return stream;
  }

  get laneKey(): string {
    return this.options.laneKey;
  }

  // Carries the stream on an idle lane; undefined when there is none (the caller then opens a
  // stream on the link).
  carryOnLane(client: ClientEnd, request: StreamRequest): Promise<SpliceResult> | undefined {
    if (this.closed) return undefined;
    const lane = this.lanes.take();
    if (lane === undefined) return undefined;
    this.activeStreams++;
    return lane.carry(client, request).finally(() => {
      this.activeStreams--;
    });
  }

  close(reason: GatewayError): void {
    if (this.closedWith) return;
    this.closedWith = reason;
    this.lanes.closeAll(reason);
    clearInterval(this.heartbeatTimer);
    this.heartbeat?.cancel();
    this.options.log.info('agent link closed', { agentId: this.agentId, reason: reason.message });
    this.emit('closed', reason);
    // Streams still open learn of it through their own error events; destroy() reaches them all.
    this.session.destroy();
  }
}
