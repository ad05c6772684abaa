import http2, { type ServerHttp2Stream } from 'node:http2';
import { Header, STREAM_END_CLEAN, WireErrorHttpStatus } from '@slipway/proto';
import { wireCodeOf, type GatewayError } from './gatewayError.js';
import type { ClientEnd } from './tunnelSplice.js';

export function errorHeaders(error: GatewayError): Record<string, string> {
  return {
    [Header.errorCode]: wireCodeOf(error.code),
    // Header values must be single-line latin1; messages are ours, but keep them safe.
    [Header.errorMessage]: error.message.replace(/[^\x20-\x7e]/g, ' ').slice(0, 1024),
  };
}

// Answers a tunnel request that never reached an agent: status, code header and a JSON body.
export function refuseHttp2(stream: ServerHttp2Stream, error: GatewayError): void {
  if (stream.destroyed || stream.closed) return;
  const code = wireCodeOf(error.code);
  if (stream.headersSent) {
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    return;
  }
  stream.respond({ ':status': WireErrorHttpStatus[code], 'content-type': 'application/json', ...errorHeaders(error) });
  stream.end(JSON.stringify({ error: { code, message: error.message } }));
  // Whatever the client still sends is discarded rather than left to fill the window.
  stream.resume();
}

// A tunnel carried by one HTTP/2 stream: request body up, response body down, and the end of the
// response body carries trailers that say whether the agent's side ended cleanly.
export class Http2ClientEnd implements ClientEnd {
  private trailers: Record<string, string> = { [Header.streamEnd]: STREAM_END_CLEAN };

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly extraHeaders: () => Record<string, string> = () => ({}),
  ) {}

  get readable(): ServerHttp2Stream {
    return this.stream;
  }

  get writable(): ServerHttp2Stream {
    return this.stream;
  }

  accept(): void {
    if (this.stream.headersSent || this.stream.destroyed) return;
    this.stream.respond({ ':status': 200, 'content-type': 'application/octet-stream', ...this.extraHeaders() }, { waitForTrailers: true });
    this.stream.on('wantTrailers', () => this.stream.sendTrailers(this.trailers));
  }

  finish(): void {
    if (!this.stream.destroyed) this.stream.end();
  }

  fail(error: GatewayError): void {
    if (this.stream.destroyed || this.stream.closed) return;
    if (!this.stream.headersSent) {
      refuseHttp2(this.stream, error);
      return;
    }
    if (this.stream.writableEnded) {
      // Trailers are already on their way; the only signal left is a reset.
      this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    this.trailers = errorHeaders(error);
    this.stream.end();
    this.stream.resume();
  }

  abort(): void {
    if (!this.stream.destroyed) this.stream.close(http2.constants.NGHTTP2_CANCEL);
  }
}
