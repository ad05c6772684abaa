// gRPC length-prefixed message framing (1 byte compressed flag, 4 bytes big-endian length).
// Used where a gRPC peer is spoken to over a raw HTTP/2 session rather than through grpc-js.

/** The 5 bytes in front of an uncompressed message of `length` bytes. */
export function grpcFramePrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(5);
  prefix.writeUInt8(0, 0);
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

export function encodeGrpcFrame(message: Buffer): Buffer {
  return Buffer.concat([grpcFramePrefix(message.length), message], 5 + message.length);
}

export class GrpcFrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxMessageBytes: number) {}

  // Returns every complete message in the bytes seen so far; keeps the remainder.
  push(chunk: Buffer): Buffer[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const messages: Buffer[] = [];
    while (this.pendingBytes >= 5) {
      const head = this.peek(5);
      if (head.readUInt8(0) !== 0) throw new Error('compressed gRPC messages are not supported; expected flag 0');
      const length = head.readUInt32BE(1);
      if (length > this.maxMessageBytes) {
        throw new Error(`gRPC message of ${length} bytes exceeds the limit of ${this.maxMessageBytes}`);
      }
      if (this.pendingBytes < 5 + length) break;
      const whole = this.take(5 + length);
      messages.push(whole.subarray(5));
    }
    return messages;
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length >= n) return this.pending[0]!.subarray(0, n);
    return Buffer.concat(this.pending).subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return taken;
  }
}
