import type net from 'node:net';
import type tls from 'node:tls';
import {
  LaneFrameParser,
  LaneFrameType,
  LaneProtocolError,
  PUMP_BUFFER_BYTES,
  TurnCork,
  isLaneOpen,
  laneControlFrame,
  laneDataHeader,
  laneFrameHeader,
  parseLaneJson,
  pump,
  type LaneOpen,
  type Pump,
} from '@slipway/proto';
import { AgentError, wireCodeOf } from './agentError.js';
import type { SlabReader } from './slabReader.js';
import { closeWhenFlushed } from './closeWhenFlushed.js';
import { UPSTREAM_FLUSH_LIMIT_MS } from './upstream.js';

export interface GatewayLaneHost {
  // A stream arrived: answer it with serve() or refuse().
  open(lane: GatewayLane, request: LaneOpen): void;
  // The lane carried its stream to the end and waits for the next.
  idle(lane: GatewayLane): void;
  closed(lane: GatewayLane): void;
}

type LaneState = 'idle' | 'opening' | 'serving' | 'closed';

// How long a lane closed with an ERROR frame may take to flush it.
const FLUSH_LIMIT_MS = 5_000;

// The agent's end of one lane (proto laneFrames.ts): waits for OPEN, joins the stream to an
// upstream connection, and after both directions have ended waits for the next.
export class GatewayLane {
  private readonly parser: LaneFrameParser;
  private state: LaneState = 'idle';
  // What the gateway sent between OPEN and the upstream being ready: at most the rest of the
  // chunk that carried OPEN, since the socket is paused meanwhile.
  private early: Buffer[] = [];
  private earlyEnd = false;
  private stream: { data(bytes: Buffer): void; end(): void; cut(): void } | undefined;
  private readonly closing = new AbortController();

  // `reader` is how the socket is read (it was dialed with reader.onread).
  constructor(
    private readonly socket: tls.TLSSocket,
    reader: SlabReader,
    private readonly host: GatewayLaneHost,
  ) {
    this.parser = new LaneFrameParser({
      data: (bytes) => this.data(bytes),
      control: (type, payload) => this.control(type, payload),
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    socket.on('end', () => this.close());
    reader.consume((chunk) => {
      if (this.state === 'closed') return;
      try {
        this.parser.push(chunk);
      } catch (err) {
        if (!(err instanceof LaneProtocolError)) throw err;
        this.fail(new AgentError('GATEWAY_PROTOCOL', `gateway broke the lane protocol: ${err.message}`));
      }
    });
  }

  /** Aborted when the lane closes: an upstream dial for its stream has no one to wait for. */
  get signal(): AbortSignal {
    return this.closing.signal;
  }

  get isIdle(): boolean {
    return this.state === 'idle';
  }

  private data(bytes: Buffer): void {
    if (this.state === 'opening') {
      this.early.push(bytes);
      return;
    }
    if (this.state !== 'serving') throw new LaneProtocolError(`DATA on a lane that is ${this.state}`);
    this.stream!.data(bytes);
  }

  private control(type: LaneFrameType, payload: Buffer): void {
    if (type === LaneFrameType.OPEN) {
      if (this.state !== 'idle') throw new LaneProtocolError(`OPEN on a lane that is ${this.state}`);
      const request = parseLaneJson(payload, 'OPEN', isLaneOpen);
      this.state = 'opening';
      // Hold what follows until the upstream can take it.
      this.socket.pause();
      this.host.open(this, request);
      return;
    }
    if (type === LaneFrameType.END) {
      if (this.state === 'opening') this.earlyEnd = true;
      else if (this.state === 'serving') this.stream!.end();
      else throw new LaneProtocolError(`END on a lane that is ${this.state}`);
      return;
    }
    throw new LaneProtocolError(`frame type ${type} is not one a gateway sends`);
  }

  // Ends the stream with ERROR and closes the lane: a refusal (instead of ACCEPT; the gateway may
  // already have sent the stream's bytes behind OPEN), or a cut (the agent is shutting down).
  fail(error: AgentError): void {
    if (this.state === 'closed') return;
    this.socket.end(laneControlFrame(LaneFrameType.ERROR, { code: wireCodeOf(error.code), message: error.message.slice(0, 1024) }));
    this.close();
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closing.abort();
    const { socket } = this;
    // An ERROR on its way out (fail) is let go; anything else is over.
    if (socket.writableEnded) closeWhenFlushed(socket, FLUSH_LIMIT_MS);
    else socket.destroy();
    this.stream?.cut();
    this.host.closed(this);
  }

  // Carries the stream opened last to and from `upstream` until both directions have ended.
  // `done` is called once, however it ends.
  serve(upstream: net.Socket, done: () => void, describeFailure: (err: Error) => AgentError): void {
    if (this.state !== 'opening') {
      upstream.destroy();
      done();
      return;
    }
    const { socket } = this;
    this.state = 'serving';
    let upDone = false;
    let downDone = false;
    let finished = false;
    let pausedForUpstream = false;
    const onUpstreamDrain = (): void => {
      if (!pausedForUpstream) return;
      pausedForUpstream = false;
      socket.resume();
    };
    // `cleanly`: both directions ended, and what is still queued toward the upstream (which may
    // have ended its side long before and read slowly since) must reach it before it is closed.
    const finish = (cleanly = false): void => {
      if (finished) return;
      finished = true;
      this.stream = undefined;
      down.stop();
      upstream.off('drain', onUpstreamDrain);
      if (cleanly) closeWhenFlushed(upstream, UPSTREAM_FLUSH_LIMIT_MS);
      else upstream.destroy();
      if (pausedForUpstream) socket.resume();
      done();
    };
    const maybeIdle = (): void => {
      if (!upDone || !downDone) return;
      finish(true);
      if (this.state === 'serving') {
        this.state = 'idle';
        this.host.idle(this);
      }
    };
    upstream.removeAllListeners('error');
    upstream.on('error', (err: Error) => {
      if (downDone || finished) return;
      this.fail(describeFailure(err));
    });
    upstream.on('drain', onUpstreamDrain);
    upstream.setNoDelay(true);
    // A TLS record holds a frame header and pieces of two DATA frames: batched per turn, not a
    // syscall each.
    const batch = new TurnCork(upstream);
    const toUpstream = (bytes: Buffer): void => {
      upstream.write(bytes);
      if (upstream.writableLength >= PUMP_BUFFER_BYTES && !pausedForUpstream) {
        pausedForUpstream = true;
        socket.pause();
      }
    };
    this.stream = {
      data: (bytes) => {
        // After the upstream has gone both ways there is nowhere to put it: drop it.
        if (upstream.destroyed) return;
        batch.hold();
        toUpstream(bytes);
      },
      end: () => {
        upDone = true;
        if (!upstream.destroyed) upstream.end();
        maybeIdle();
      },
      cut: () => finish(),
    };
    // What came with OPEN is what the client waits on: it goes to the upstream now, in one write,
    // not at the end of the turn behind ACCEPT.
    const early = this.early;
    this.early = [];
    if (early.length > 0 && !upstream.destroyed) {
      upstream.cork();
      for (const bytes of early) toUpstream(bytes);
      upstream.uncork();
    }
    // ACCEPT, the first reply bytes and END often come in one turn: one TLS record, one write.
    const laneBatch = new TurnCork(socket);
    laneBatch.hold();
    socket.write(laneFrameHeader(LaneFrameType.ACCEPT, 0));
    const down: Pump = pump(
      upstream,
      socket,
      () => {
        downDone = true;
        laneBatch.hold();
        socket.write(laneFrameHeader(LaneFrameType.END, 0));
        maybeIdle();
      },
      PUMP_BUFFER_BYTES,
      laneDataHeader,
    );
    if (this.earlyEnd) {
      this.earlyEnd = false;
      this.stream.end();
    }
    if (!pausedForUpstream && this.state === 'serving') socket.resume();
  }
}
