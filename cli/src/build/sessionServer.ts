import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { GrpcFrameDecoder, grpcFramePrefix } from '@slipway/proto';
import { MessageQueue } from './messageQueue.js';
import { GRPC_OK, GRPC_UNIMPLEMENTED, GRPC_UNKNOWN, GrpcStatusError } from './grpcStatusError.js';

// The gRPC server a BuildKit client runs for its session. BuildKit dials it, on a tunnel stream
// attached to dockerd's /session or through the Control.Session stream (either way the roles
// flip: BuildKit is the HTTP/2 client; clientSession.ts says which), and calls it to read
// the context, fetch secrets and send outputs back. Messages stay raw bytes here: a handler
// decodes them itself, because FileSend carries fsutil packets or plain bytes depending on the
// exporter although its declared type is one.

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Bytes a call may have written and not yet handed to the connection before its senders wait. */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024;

export class ServerCall {
  private readonly queue: MessageQueue<Buffer>;
  private responded = false;
  /** Bytes written to the stream whose write has not completed yet. */
  private unsent = 0;
  private readonly turns: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private corked = false;

  constructor(
    private readonly stream: ServerHttp2Stream,
    readonly headers: IncomingHttpHeaders,
  ) {
    this.queue = new MessageQueue<Buffer>(
      64,
      () => stream.pause(),
      () => stream.resume(),
    );
    const decoder = new GrpcFrameDecoder(MAX_MESSAGE_BYTES);
    stream.on('data', (chunk: Buffer) => {
      try {
        for (const message of decoder.push(chunk)) this.queue.push(message);
      } catch (err) {
        this.queue.end(err as Error);
        stream.close(0x1);
      }
    });
    stream.on('end', () => this.queue.end());
    stream.on('error', (err: Error) => this.queue.end(err));
    stream.on('close', () => {
      for (const turn of this.turns.splice(0)) turn.reject(this.gone());
    });
    stream.on('close', () => this.queue.end(stream.rstCode ? new GrpcStatusError(undefined, `the builder cancelled the call (HTTP/2 code ${stream.rstCode})`, String(headers[':path'])) : undefined));
  }

  /** A metadata value BuildKit sent (lower-case name), every occurrence, decoded as BuildKit encodes them. */
  metadata(name: string): string[] {
    const raw = this.headers[name];
    const values = (raw === undefined ? [] : Array.isArray(raw) ? raw : String(raw).split(',')).map((v) => v.trim());
    // BuildKit URL-escapes values that are not valid header text and says so in NAME-encoded.
    if (String(this.headers[`${name}-encoded`] ?? '') === '1' || String(this.headers[`${name}-encoded`] ?? '') === 'true') {
      return values.map((v) => decodeURIComponent(v.replaceAll('+', ' ')));
    }
    return values;
  }

  messages(): AsyncIterable<Buffer> {
    return this.queue;
  }

  private respond(): void {
    if (this.responded) return;
    this.responded = true;
    this.stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  }

  /** Sends one message; resolves once it is written or, while much is still unsent, when its turn comes. */
  send(message: Buffer): Promise<void> {
    return this.sendParts([message]);
  }

  /**
   * Sends one message given as consecutive pieces (a header and a payload, say), so a large
   * payload is written as it is rather than copied into a frame. Senders do not wait for each
   * write to complete (an event-loop round per message), but what is written and not yet
   * handed to the connection is bounded: everything queued here is also queued ahead of the
   * session's other calls on the one connection, BuildKit's health checks among them, which end
   * the session when they go unanswered for long (10 s on older BuildKit).
   */
  async sendParts(parts: readonly Buffer[]): Promise<void> {
    this.respond();
    if (this.unsent >= MAX_UNSENT_BYTES || this.turns.length > 0) {
      await new Promise<void>((resolve, reject) => this.turns.push({ resolve, reject }));
    }
    if (this.stream.destroyed || this.stream.writableEnded) throw this.gone();
    let length = 0;
    for (const part of parts) length += part.length;
    const prefix = grpcFramePrefix(length);
    this.unsent += length + 5;
    const written = (): void => {
      this.unsent -= length + 5;
      while (this.turns.length > 0 && this.unsent < MAX_UNSENT_BYTES) this.turns.shift()!.resolve();
    };
    this.corkForThisTick();
    const last = parts.findLastIndex((p) => p.length > 0);
    this.stream.write(prefix, last < 0 ? written : undefined);
    for (let i = 0; i <= last; i++) if (parts[i]!.length > 0) this.stream.write(parts[i], i === last ? written : undefined);
  }

  /**
   * Everything sent in this turn of the event loop goes to the connection as one write: a
   * context's listing is thousands of small STAT messages, and each small file a DATA message
   * and an empty one, which written one by one each cost a trip through the HTTP/2 stream.
   */
  private corkForThisTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.stream.cork();
    process.nextTick(() => {
      this.corked = false;
      this.stream.uncork();
    });
  }

  private gone(): GrpcStatusError {
    return new GrpcStatusError(undefined, 'the builder went away', String(this.headers[':path']));
  }

  finish(code: number, message = ''): void {
    if (this.stream.destroyed || this.stream.closed) return;
    const trailers = { 'grpc-status': String(code), ...(message ? { 'grpc-message': encodeURIComponent(message) } : {}) };
    if (!this.responded) {
      // Trailers-only answer.
      this.responded = true;
      this.stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
      return;
    }
    this.stream.once('wantTrailers', () => this.stream.sendTrailers(trailers));
    this.stream.end();
  }
}

export type ServerHandler = (call: ServerCall) => Promise<void>;

export class SessionServer {
  private readonly handlers = new Map<string, ServerHandler>();
  private readonly server = http2.createServer({ settings: { initialWindowSize: 4 * 1024 * 1024 } });
  private session: http2.ServerHttp2Session | undefined;

  constructor(private readonly onError: (err: Error) => void) {
    this.server.on('session', (session) => {
      this.session = session;
      session.on('error', (err: Error) => onError(err));
    });
    this.server.on('stream', (stream, headers) => this.dispatch(stream, headers));
  }

  handle(path: string, handler: ServerHandler): void {
    this.handlers.set(path, handler);
  }

  /** Every method served, as BuildKit wants them listed when the session is opened. */
  get methods(): string[] {
    return [...this.handlers.keys()];
  }

  /** Serves HTTP/2 on the connection BuildKit dials through the session stream. */
  serve(connection: Duplex): void {
    connection.on('error', (err: Error) => this.onError(err));
    this.server.emit('connection', connection);
  }

  close(): void {
    this.session?.destroy();
  }

  private dispatch(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {
      // The call's own queue reports it to the handler.
    });
    const call = new ServerCall(stream, headers);
    const handler = this.handlers.get(String(headers[':path']));
    if (!handler) {
      call.finish(GRPC_UNIMPLEMENTED, `${String(headers[':path'])} is not served by this session`);
      return;
    }
    handler(call).then(
      () => call.finish(GRPC_OK),
      (err: unknown) => {
        const status = err instanceof GrpcStatusError && err.code !== undefined ? err.code : GRPC_UNKNOWN;
        call.finish(status, err instanceof Error ? err.message : String(err));
      },
    );
  }
}
