import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { GrpcFrameDecoder, encodeGrpcFrame } from '@slipway/proto';
import { MessageQueue } from './messageQueue.js';
import { GRPC_OK, GRPC_UNIMPLEMENTED, GRPC_UNKNOWN, GrpcStatusError } from './grpcStatusError.js';

// The gRPC server a BuildKit client runs for its session. BuildKit dials it through the
// Control.Session stream (the roles flip: BuildKit is the HTTP/2 client), and calls it to read
// the context, fetch secrets and send outputs back. Messages stay raw bytes here: a handler
// decodes them itself, because FileSend carries fsutil packets or plain bytes depending on the
// exporter although its declared type is one.

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export class ServerCall {
  private readonly queue: MessageQueue<Buffer>;
  private responded = false;

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

  send(message: Buffer): Promise<void> {
    this.respond();
    return new Promise((resolve, reject) => {
      if (this.stream.destroyed) {
        reject(new GrpcStatusError(undefined, 'the builder went away', String(this.headers[':path'])));
        return;
      }
      this.stream.write(encodeGrpcFrame(message), (err) => (err ? reject(err) : resolve()));
    });
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
