import http2, { type ServerHttp2Stream, type IncomingHttpHeaders, type ClientHttp2Session } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { pump } from '@slipway/proto';
import { duplexPair } from './duplexPair.js';

// The gateway's HTTP/2 session to the agent carries both raw tunnel streams and gRPC control
// calls. grpc-js cannot share an HTTP/2 server with anything else, so control calls are relayed
// over an in-memory HTTP/2 connection into a grpc-js server given that connection by its
// connection injector. Control traffic is a few small messages per second.
export class GrpcBridge {
  private readonly session: ClientHttp2Session;

  constructor(server: grpc.Server) {
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const [clientSide, serverSide] = duplexPair();
    injector.injectConnection(serverSide);
    this.session = http2.connect('http://agent-control.invalid', { createConnection: () => clientSide });
    this.session.on('error', () => {});
  }

  forward(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const outgoing: http2.OutgoingHttpHeaders = { ':method': headers[':method'] ?? 'POST', ':path': headers[':path'] ?? '/' };
    for (const [name, value] of Object.entries(headers)) {
      if (!name.startsWith(':') && value !== undefined) outgoing[name] = value;
    }
    const call = this.session.request(outgoing);
    let trailers: http2.OutgoingHttpHeaders = {};
    call.on('error', () => {});
    const cancel = (): void => {
      if (!call.closed) call.close(http2.constants.NGHTTP2_CANCEL);
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    pump(stream, call, () => call.end());
    call.on('response', (responseHeaders) => {
      if (stream.destroyed) return;
      if (responseHeaders['grpc-status'] !== undefined) {
        // Trailers-only response: the whole answer is in the headers.
        stream.respond(responseHeaders, { endStream: true });
        return;
      }
      stream.respond(responseHeaders, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers(trailers));
      pump(call, stream, () => stream.end());
    });
    call.on('trailers', (t) => {
      trailers = { ...t };
    });
    call.on('close', () => {
      if (!stream.writableEnded) cancel();
    });
    stream.on('close', () => {
      if (!call.closed) call.close(http2.constants.NGHTTP2_CANCEL);
    });
  }

  close(): void {
    this.session.destroy();
  }
}
