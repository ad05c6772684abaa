import type { Duplex } from 'node:stream';
import {
  LaneFrameParser,
  LaneFrameType,
  LaneProtocolError,
  PUMP_BUFFER_BYTES,
  TurnCork,
  isLaneError,
  laneControlFrame,
  laneDataHeader,
  laneFrameHeader,
  parseLaneJson,
  pump,
  type LaneOpen,
  type Pump,
} from '@slipway/proto';
import { GatewayError, agentReportedError } from './gatewayError.js';
import type { ClientEnd, SpliceResult } from './tunnelSplice.js';

// What the stream being carried does with the frames the agent sends.
interface FrameSink {
  accept(): void;
  data(bytes: Buffer): void;
  end(): void;
  fail(error: GatewayError): void;
  // The lane died under the stream.
  cut(reason: string): void;
}

// The gateway's end of one lane (proto laneFrames.ts): carries one tunnel stream at a time, then
// goes back to its link's idle lanes.
export class AgentLane {
  private readonly parser: LaneFrameParser;
  private sink: FrameSink | undefined;
  private closedWith: string | undefined;
  /** Set by AgentLanes while the lane waits for a stream. */
  idleSince = 0;
  private readonly cork: TurnCork;

  constructor(
    private readonly socket: Duplex,
    readonly agentId: string,
    private readonly onIdle: (lane: AgentLane) => void,
    private readonly onClosed: (lane: AgentLane) => void,
  ) {
    this.cork = new TurnCork(socket);
    this.parser = new LaneFrameParser({
      data: (bytes) => {
        if (this.sink === undefined) throw new LaneProtocolError('DATA on an idle lane');
        this.sink.data(bytes);
      },
      control: (type, payload) => this.control(type, payload),
    });
    socket.on('error', (err: Error) => this.close(err.message));
    socket.on('close', () => this.close('connection closed'));
    socket.on('end', () => this.close('agent ended the lane'));
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.push(chunk);
      } catch (err) {
        this.close(`agent broke the lane protocol: ${(err as Error).message}`);
      }
    });
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  private control(type: LaneFrameType, payload: Buffer): void {
    const sink = this.sink;
    if (sink === undefined) throw new LaneProtocolError(`frame type ${type} on an idle lane`);
    switch (type) {
      case LaneFrameType.ACCEPT:
        sink.accept();
        return;
      case LaneFrameType.END:
        sink.end();
        return;
      case LaneFrameType.ERROR: {
        const { code, message } = parseLaneJson(payload, 'ERROR', isLaneError);
        sink.fail(agentReportedError(code, message.slice(0, 1024)));
        return;
      }
      default:
        throw new LaneProtocolError(`frame type ${type} is not one an agent sends`);
    }
  }

  close(reason: string): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = reason;
    this.socket.destroy();
    this.sink?.cut(reason);
    this.onClosed(this);
  }

  // Sends OPEN and the client's bytes behind it at once (the agent queues them until its
  // upstream is connected), and joins the two ends until both directions have ended or one
  // fails; a failure is reported to the client in its transport's terms.
  carry(client: ClientEnd, open: LaneOpen): Promise<SpliceResult> {
    return new Promise((resolve) => {
      const { socket } = this;
      let accepted = false;
      let upDone = false;
      let downDone = false;
      let settled = false;
      let bytesDown = 0;
      let pausedForClient = false;
      const onClientDrain = (): void => {
        if (!pausedForClient) return;
        pausedForClient = false;
        socket.resume();
      };
      const settle = (error: GatewayError | undefined): void => {
        if (settled) return;
        settled = true;
        up.stop();
        client.writable.off('drain', onClientDrain);
        this.sink = undefined;
        if (pausedForClient) socket.resume();
        resolve({ error, bytesUp: up.bytes, bytesDown });
      };
      const maybeDone = (): void => {
        if (!upDone || !downDone) return;
        settle(undefined);
        if (!this.closed) this.onIdle(this);
      };
      const failFromAgent = (error: GatewayError): void => {
        if (settled) return;
        client.fail(error);
        settle(error);
        this.close(`stream failed: ${error.message}`);
      };
      const clientGone = (why: string): void => {
        if (settled) return;
        client.abort();
        settle(new GatewayError('BAD_REQUEST', why));
        // The agent learns of it by the lane closing; its upstream connection goes with it.
        this.close(why);
      };
      const protocol = (what: string): void => failFromAgent(new GatewayError('AGENT_LOST', `agent ${this.agentId} broke the lane protocol: ${what}`));

      // Pieces of DATA frames cut by TLS records: batched per turn into the client's transport.
      const batch = new TurnCork(client.writable);
      this.sink = {
        accept: () => {
          if (accepted) return protocol('a second ACCEPT');
          accepted = true;
          client.accept();
        },
        data: (bytes) => {
          if (!accepted || downDone) return protocol(accepted ? 'DATA after END' : 'DATA before ACCEPT');
          bytesDown += bytes.length;
          batch.hold();
          client.writable.write(bytes);
          if (client.writable.writableLength >= PUMP_BUFFER_BYTES && !pausedForClient) {
            pausedForClient = true;
            socket.pause();
          }
        },
        end: () => {
          if (!accepted || downDone) return protocol(accepted ? 'a second END' : 'END before ACCEPT');
          downDone = true;
          client.finish();
          maybeDone();
        },
        fail: failFromAgent,
        cut: (reason) => {
          if (downDone) {
            // The agent finished its direction and went: whatever the client still sends has
            // nowhere to go. Drop it quietly, as over the link.
            up.stop();
            client.readable.resume();
            upDone = true;
            settle(undefined);
            return;
          }
          failFromAgent(new GatewayError('AGENT_LOST', `agent ${this.agentId} was lost: its lane closed before the stream completed (${reason})`));
        },
      };
      client.writable.on('drain', onClientDrain);
      // OPEN leaves in one TLS record with the client's first bytes, which usually arrived with
      // the request: one write, not two, on the way to the agent.
      this.cork.hold();
      socket.write(laneControlFrame(LaneFrameType.OPEN, open));
      const up: Pump = pump(
        client.readable,
        socket,
        () => {
          upDone = true;
          this.cork.hold();
          socket.write(laneFrameHeader(LaneFrameType.END, 0));
          maybeDone();
        },
        PUMP_BUFFER_BYTES,
        laneDataHeader,
      );
      client.readable.on('error', (err) => clientGone(`client stream failed: ${err.message}`));
      client.readable.on('close', () => {
        if (!upDone) clientGone('client closed the stream before ending it');
      });
    });
  }
}
