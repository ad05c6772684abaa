import http2, { type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type net from 'node:net';
import { Header, STREAM_END_CLEAN, WireErrorHttpStatus, parseSessionAttachment, pump, type LaneOpen, type Logger, type SessionAttachment } from '@slipway/proto';
import { AgentError, toAgentError, wireCodeOf } from './agentError.js';
import { UPSTREAM_FLUSH_LIMIT_MS, type Upstream } from './upstream.js';
import { closeWhenFlushed } from './closeWhenFlushed.js';
import type { GatewayLane } from './gatewayLane.js';

// A stream being carried, over the link or a lane: all the drain needs of it.
interface CarriedStream {
  cut(): void;
}

function errorHeaders(error: AgentError): Record<string, string> {
  return {
    [Header.errorCode]: wireCodeOf(error.code),
    [Header.errorMessage]: error.message.replace(/[^\x20-\x7e]/g, ' ').slice(0, 1024),
  };
}

// Connects each tunnel stream the gateway opens to a fresh upstream connection and carries bytes
// both ways, each direction half-closing on its own. The stream is answered only once the
// upstream is connected, so a refused upstream is a clean error status, not a reset.
export class TunnelStreamHandler {
  private active = 0;
  private draining = false;
  // Past the drain: the last streams are being cut and nothing new is taken.
  private closing = false;
  private opened = 0;
  private lastEndedAtMs = 0;
  private readonly streams = new Set<CarriedStream>();
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly upstream: Upstream,
    private readonly maxStreams: number,
    private readonly log: Logger,
  ) {}

  get activeStreams(): number {
    return this.active;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {});
    const streamId = String(headers[Header.streamId] ?? '');
    const refusal = this.refusal();
    if (refusal) return this.refuse(stream, refusal);
    const ended = this.begin({ cut: () => stream.close(http2.constants.NGHTTP2_CANCEL) });
    stream.once('close', ended);
    const abort = new AbortController();
    stream.once('close', () => abort.abort(new AgentError('UPSTREAM_FAILED', 'gateway closed the stream')));
    const session = headers[Header.session];
    this.dialFor(Array.isArray(session) ? session[0] : session, abort.signal).then(
      (socket) => this.splice(stream, socket, streamId),
      (err: unknown) => this.refuse(stream, toAgentError(err)),
    );
  }

  // The same for a stream that arrived on a lane.
  handleLane(lane: GatewayLane, request: LaneOpen): void {
    const refusal = this.refusal();
    if (refusal) {
      this.log.info('stream refused', { code: refusal.code, reason: refusal.message });
      lane.fail(refusal);
      return;
    }
    const ended = this.begin({ cut: () => lane.fail(new AgentError('DRAINING', 'agent drained and shut down before the stream completed')) });
    this.dialFor(request.session, lane.signal).then(
      (socket) =>
        lane.serve(socket, ended, (err) => {
          this.log.info('upstream failed', { streamId: request.streamId, reason: err.message });
          return new AgentError('UPSTREAM_FAILED', `upstream ${this.upstream.address} failed: ${err.message}`);
        }),
      (err: unknown) => {
        const error = toAgentError(err);
        this.log.info('stream refused', { code: error.code, reason: error.message });
        lane.fail(error);
        ended();
      },
    );
  }

  // The upstream for a stream: BuildKit's API, or the session the stream attaches.
  private async dialFor(session: string | undefined, signal: AbortSignal): Promise<net.Socket> {
    if (session === undefined) return this.upstream.dial(signal);
    let attachment: SessionAttachment;
    try {
      attachment = parseSessionAttachment(session);
    } catch (err) {
      // The gateway checked it: one that arrives bad here did not come through a gateway of ours.
      throw new AgentError('GATEWAY_PROTOCOL', `the stream's ${Header.session} is not valid: ${(err as Error).message}`);
    }
    return this.upstream.dialSession(attachment, signal);
  }

  private refusal(): AgentError | undefined {
    if (this.closing) return new AgentError('DRAINING', 'agent has drained and is shutting down; it takes no new streams');
    if (this.active >= this.maxStreams) return new AgentError('UPSTREAM_UNAVAILABLE', `agent is at its limit of ${this.maxStreams} streams`);
    return undefined;
  }

  // Counts a stream in; the returned function counts it out, once.
  private begin(stream: CarriedStream): () => void {
    this.active++;
    this.opened++;
    this.streams.add(stream);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.active--;
      this.lastEndedAtMs = Date.now();
      this.streams.delete(stream);
      if (this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
    };
  }

  private refuse(stream: ServerHttp2Stream, error: AgentError): void {
    if (stream.destroyed || stream.closed || stream.headersSent) return;
    this.log.info('stream refused', { code: error.code, reason: error.message });
    stream.respond({ ':status': WireErrorHttpStatus[wireCodeOf(error.code)], ...errorHeaders(error) }, { endStream: true });
    stream.resume();
  }

  private splice(stream: ServerHttp2Stream, socket: net.Socket, streamId: string): void {
    socket.removeAllListeners('error');
    if (stream.destroyed || stream.closed) {
      socket.destroy();
      return;
    }
    let trailers: Record<string, string> = { [Header.streamEnd]: STREAM_END_CLEAN };
    let upDone = false;
    let downDone = false;
    const finishIfDone = (): void => {
      if (upDone && downDone) closeWhenFlushed(socket, UPSTREAM_FLUSH_LIMIT_MS);
    };
    socket.on('error', (err) => {
      if (downDone) return;
      downDone = true;
      trailers = errorHeaders(new AgentError('UPSTREAM_FAILED', `upstream ${this.upstream.address} failed: ${err.message}`));
      this.log.info('upstream failed', { streamId, reason: err.message });
      if (!stream.writableEnded) stream.end();
      else if (!stream.closed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
    socket.setNoDelay(true);
    stream.respond({ ':status': 200 }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    pump(stream, socket, () => {
      upDone = true;
      socket.end();
      finishIfDone();
    });
    pump(socket, stream, () => {
      downDone = true;
      stream.end();
      finishIfDone();
    });
    // The gateway cancelling (its client left, or the link died) ends the upstream connection; a
    // stream that ended both ways leaves it to finish writing (finishIfDone).
    stream.once('close', () => {
      if (!upDone || !downDone) socket.destroy();
    });
  }

  // Keeps taking streams (of builds already placed here) until none has been open for quietMs, or
  // the grace period runs out; then takes nothing more and cuts what is left.
  async drain(graceMs: number, quietMs: number): Promise<void> {
    this.draining = true;
    const deadline = Date.now() + graceMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      if (this.active > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, left);
          }),
        ]);
        clearTimeout(timer);
        continue;
      }
      // Idle: done unless a stream opens within the quiet period after the last one ended (a
      // build between two connections). An agent that served nothing lately has no build to wait for.
      const quietLeft = this.lastEndedAtMs + quietMs - Date.now();
      if (quietLeft <= 0) break;
      const opened = this.opened;
      await new Promise((resolve) => setTimeout(resolve, Math.min(quietLeft, Math.max(0, deadline - Date.now()))));
      if (this.opened === opened && this.active === 0) break;
    }
    this.closing = true;
    for (const stream of [...this.streams]) stream.cut();
  }
}
