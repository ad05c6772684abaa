import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { GrpcFrameDecoder, grpcFramePrefix } from '@slipway/proto';
import type { MethodCodec } from './buildkitProtos.js';
import { MessageQueue } from './messageQueue.js';
import { GRPC_OK, GrpcStatusError, grpcMessageOf } from './grpcStatusError.js';

// One gRPC call on an HTTP/2 session that already leads to BuildKit (a tunnel stream).
// grpc-js cannot be given an arbitrary byte stream as its connection, so calls are framed by hand.

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export class GrpcClientCall<Req, Res> {
  /** Settles with the call's status: resolves on OK, rejects with a GrpcStatusError otherwise. */
  readonly done: Promise<void>;
  private readonly stream: ClientHttp2Stream;
  private readonly queue: MessageQueue<Res>;
  private settle!: (error: GrpcStatusError | undefined) => void;
  private status: GrpcStatusError | null | undefined;

  constructor(
    session: ClientHttp2Session,
    private readonly codec: MethodCodec<Req, Res>,
    metadata: OutgoingHttpHeaders = {},
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = (error) => (error ? reject(error) : resolve());
    });
    // A caller that only awaits messages still learns the status through them.
    this.done.catch(() => {});
    this.stream = session.request({ ':method': 'POST', ':path': codec.path, 'content-type': 'application/grpc', te: 'trailers', ...metadata });
    this.queue = new MessageQueue<Res>(
      64,
      () => this.stream.pause(),
      () => this.stream.resume(),
    );
    const decoder = new GrpcFrameDecoder(MAX_MESSAGE_BYTES);
    this.stream.on('response', (headers) => {
      // A trailers-only answer carries grpc-status in the headers.
      if (headers['grpc-status'] !== undefined) this.finish(Number(headers['grpc-status']), grpcMessageOf(headers['grpc-message']));
      else if (Number(headers[':status']) !== 200) this.finish(undefined, `HTTP status ${String(headers[':status'])}`);
    });
    this.stream.on('data', (chunk: Buffer) => {
      try {
        for (const message of decoder.push(chunk)) this.queue.push(codec.decodeResponse(message));
      } catch (err) {
        this.stream.close();
        this.finish(undefined, `undecodable answer: ${(err as Error).message}`);
      }
    });
    this.stream.on('trailers', (trailers) => {
      this.finish(Number(trailers['grpc-status'] ?? -1), grpcMessageOf(trailers['grpc-message']));
    });
    this.stream.on('error', (err: Error) => this.finish(undefined, err.message));
    this.stream.on('close', () => this.finish(undefined, this.stream.rstCode ? `stream reset (HTTP/2 code ${this.stream.rstCode})` : 'the connection closed'));
  }

  private finish(code: number | undefined, details: string): void {
    if (this.status !== undefined) return;
    const error = code === GRPC_OK ? undefined : new GrpcStatusError(code, details, this.codec.path);
    this.status = error ?? null;
    this.queue.end(error);
    this.settle(error);
  }

  /** Sends one message; resolves once the stream took it (HTTP/2 flow control applies). */
  write(message: Req): Promise<void> {
    return this.writeRaw(this.codec.encodeRequest(message));
  }

  writeRaw(bytes: Buffer): Promise<void> {
    return this.writeParts([bytes]);
  }

  /**
   * Sends one encoded message given as consecutive pieces, written as they are behind the gRPC
   * prefix: a message wrapping megabytes of payload is never copied to be framed.
   */
  writeParts(parts: readonly Buffer[]): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.stream.destroyed || this.stream.writableEnded) {
        reject(new GrpcStatusError(undefined, 'the call is over', this.codec.path));
        return;
      }
      let length = 0;
      for (const part of parts) length += part.length;
      const done = (err?: Error | null): void => (err ? reject(err) : resolve());
      const last = parts.findLastIndex((p) => p.length > 0);
      // Corked: the HTTP/2 stream takes the prefix and the pieces in one write.
      this.stream.cork();
      this.stream.write(grpcFramePrefix(length), last < 0 ? done : undefined);
      for (let i = 0; i <= last; i++) if (parts[i]!.length > 0) this.stream.write(parts[i], i === last ? done : undefined);
      this.stream.uncork();
    });
  }

  /** No more messages from us. */
  end(): void {
    if (!this.stream.writableEnded && !this.stream.destroyed) this.stream.end();
  }

  /** Ends the call at once (RST_STREAM CANCEL): BuildKit cancels what it was doing for it. */
  cancel(): void {
    if (!this.stream.destroyed) this.stream.close(0x8);
  }

  messages(): AsyncIterable<Res> {
    return this.queue;
  }

  /** The single answer of a unary call. */
  static async unary<Req, Res>(session: ClientHttp2Session, codec: MethodCodec<Req, Res>, request: Req, metadata?: OutgoingHttpHeaders): Promise<Res> {
    const call = new GrpcClientCall(session, codec, metadata);
    await call.write(request);
    call.end();
    let answer: Res | undefined;
    for await (const message of call.messages()) answer = message;
    await call.done;
    if (answer === undefined) throw new GrpcStatusError(undefined, 'no answer message', codec.path);
    return answer;
  }
}
