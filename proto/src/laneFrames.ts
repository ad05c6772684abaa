// Lanes: the gateway-to-agent data path for tunnel streams.
//
// Why not the agent link's HTTP/2: every byte relayed through a Node HTTP/2 session costs its
// frame handling in JS, and the agent's session must sit behind SocketDuplex (a JS stream, so
// Node wraps it in a JSStreamSocket) to stay deadlock-free. Measured on the tunnel bench that
// made the agent the dearest hop per byte. A lane is a TLS connection the agent dials ahead of
// need (so a stream still costs no round trip) that carries one tunnel stream at a time as a
// thin framing over raw bytes; TCP does the flow control, and a lane's two directions never wait
// on each other, so nothing can deadlock.
//
// The agent opens a lane with `GET AGENT_LANE_PATH` and `Upgrade: LANE_UPGRADE_PROTOCOL`,
// naming itself (slipway-agent-id) and proving it holds the link to that replica with the key
// the replica gave on the link's 101 (slipway-lane-key). After the 101 both ends speak frames:
//
//   frame = type (1 byte) | payload length (4 bytes, big-endian) | payload
//
//   OPEN    gateway -> agent  JSON {streamId, project, platform, session?}: a stream starts (session:
//                             a BuildKit session to attach, sessionAttachment.ts); its DATA may
//                             follow at once, before the agent has answered.
//   ACCEPT  agent -> gateway  empty: the upstream is connected.
//   DATA    both ways         bytes of the stream.
//   END     both ways         empty: the sender's direction ended cleanly (half-close).
//   ERROR   agent -> gateway  JSON {code, message}: refused (instead of ACCEPT) or failed (instead
//                             of END). The lane is closed after it.
//
// Once both directions have ended, the lane is idle and may carry the next OPEN. Either end
// closing the connection mid-stream aborts the stream; the gateway closes idle lanes it no longer
// wants, and only the gateway picks a lane, so no stream can be sent down a lane being retired.

export const AGENT_LANE_PATH = '/v1/agent/lane';
export const LANE_UPGRADE_PROTOCOL = 'slipway-lane/1';

export const LaneFrameType = {
  DATA: 0,
  END: 1,
  OPEN: 2,
  ACCEPT: 3,
  ERROR: 4,
} as const;
export type LaneFrameType = (typeof LaneFrameType)[keyof typeof LaneFrameType];

export const LANE_FRAME_HEADER_BYTES = 5;
// OPEN and ERROR are small JSON documents; anything larger is not from a peer speaking this.
export const LANE_MAX_CONTROL_BYTES = 8 * 1024;

export interface LaneOpen {
  streamId: string;
  project: string;
  platform: string;
  /** The header's JSON as the client sent it (validated by the gateway, and again by the agent). */
  session?: string;
}

export interface LaneError {
  code: string;
  message: string;
}

export function laneFrameHeader(type: LaneFrameType, payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(LANE_FRAME_HEADER_BYTES);
  header[0] = type;
  header.writeUInt32BE(payloadBytes, 1);
  return header;
}

export function laneControlFrame(type: LaneFrameType, payload?: object): Buffer {
  const body = payload === undefined ? undefined : Buffer.from(JSON.stringify(payload));
  const header = laneFrameHeader(type, body?.length ?? 0);
  return body === undefined ? header : Buffer.concat([header, body]);
}

export interface LaneFrameHandler {
  // A piece of a DATA frame's payload, as it arrived: a view into the chunk read, not a copy.
  data(bytes: Buffer): void;
  // A complete frame of any other type.
  control(type: LaneFrameType, payload: Buffer): void;
}

export class LaneProtocolError extends Error {}

const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(LaneFrameType));

// Cuts a lane's byte stream into frames. DATA payloads are passed on in pieces as they arrive
// (never buffered whole: a frame may be as large as a sender's write); control frames are
// collected and bounded.
export class LaneFrameParser {
  private readonly header = Buffer.alloc(LANE_FRAME_HEADER_BYTES);
  private headerBytes = 0;
  private type: LaneFrameType = LaneFrameType.DATA;
  private remaining = 0;
  private inFrame = false;
  private control: Buffer[] = [];

  constructor(private readonly handler: LaneFrameHandler) {}

  // Between frames: a connection closing here lost nothing.
  get atFrameBoundary(): boolean {
    return !this.inFrame && this.headerBytes === 0;
  }

  // Throws LaneProtocolError on a frame no peer speaking this protocol would send.
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (!this.inFrame) {
        let type: number;
        if (this.headerBytes === 0 && chunk.length - offset >= LANE_FRAME_HEADER_BYTES) {
          // The whole header is in this chunk (nearly always): read it where it is.
          type = chunk[offset]!;
          this.remaining = chunk.readUInt32BE(offset + 1);
          offset += LANE_FRAME_HEADER_BYTES;
        } else {
          const take = Math.min(LANE_FRAME_HEADER_BYTES - this.headerBytes, chunk.length - offset);
          chunk.copy(this.header, this.headerBytes, offset, offset + take);
          this.headerBytes += take;
          offset += take;
          if (this.headerBytes < LANE_FRAME_HEADER_BYTES) return;
          this.headerBytes = 0;
          type = this.header[0]!;
          this.remaining = this.header.readUInt32BE(1);
        }
        if (!KNOWN_TYPES.has(type)) throw new LaneProtocolError(`unknown lane frame type ${type}; expected 0-4`);
        this.type = type as LaneFrameType;
        if (this.type !== LaneFrameType.DATA && this.remaining > LANE_MAX_CONTROL_BYTES) {
          throw new LaneProtocolError(`lane frame of type ${type} carries ${this.remaining} bytes; control frames are at most ${LANE_MAX_CONTROL_BYTES}`);
        }
        this.inFrame = true;
        if (this.remaining === 0) {
          this.finishFrame();
          continue;
        }
      }
      const take = Math.min(this.remaining, chunk.length - offset);
      const piece = take === chunk.length ? chunk : chunk.subarray(offset, offset + take);
      offset += take;
      this.remaining -= take;
      if (this.type === LaneFrameType.DATA) this.handler.data(piece);
      else this.control.push(piece);
      if (this.remaining === 0) this.finishFrame();
    }
  }

  private finishFrame(): void {
    this.inFrame = false;
    if (this.type === LaneFrameType.DATA) return;
    const payload = this.control.length === 1 ? this.control[0]! : Buffer.concat(this.control);
    this.control = [];
    this.handler.control(this.type, payload);
  }
}

export function parseLaneJson<T>(payload: Buffer, what: string, check: (value: Record<string, unknown>) => value is Record<string, unknown> & T): T {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new LaneProtocolError(`${what} frame is not JSON`);
  }
  if (typeof value !== 'object' || value === null || !check(value as Record<string, unknown>)) {
    throw new LaneProtocolError(`${what} frame lacks its fields`);
  }
  return value as T;
}

export function isLaneOpen(value: Record<string, unknown>): value is Record<string, unknown> & LaneOpen {
  return (
    typeof value.streamId === 'string' &&
    typeof value.project === 'string' &&
    typeof value.platform === 'string' &&
    (value.session === undefined || typeof value.session === 'string')
  );
}

export function isLaneError(value: Record<string, unknown>): value is Record<string, unknown> & LaneError {
  return typeof value.code === 'string' && typeof value.message === 'string';
}

export function laneDataHeader(payloadBytes: number): Buffer {
  return laneFrameHeader(LaneFrameType.DATA, payloadBytes);
}
