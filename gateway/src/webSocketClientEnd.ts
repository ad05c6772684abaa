import type { WebSocket } from 'ws';
import { WebSocketByteStream, WsCloseCode } from '@slipway/proto';
import { wireCodeOf, type GatewayError } from './gatewayError.js';
import type { ClientEnd } from './tunnelSplice.js';

// WebSocket close reasons are limited to 123 bytes of UTF-8.
export function closeReason(error: GatewayError): string {
  const text = `${wireCodeOf(error.code)}: ${error.message}`;
  return Buffer.byteLength(text) <= 123 ? text : `${Buffer.from(text).subarray(0, 120).toString('utf8')}...`;
}

// A tunnel carried by a WebSocket (HTTP/1.1 paths where HTTP/2 does not survive): bytes as binary
// messages, end-of-stream as an empty one, failures as close codes 4xxx with the reason.
export class WebSocketClientEnd implements ClientEnd {
  readonly stream: WebSocketByteStream;
  private downEnded = false;
  private upEnded = false;

  constructor(private readonly ws: WebSocket) {
    this.stream = new WebSocketByteStream(ws);
    this.stream.on('end', () => {
      this.upEnded = true;
      this.closeIfDone();
    });
    // Errors surface through the splice's listeners; this one keeps an early error from throwing.
    this.stream.on('error', () => {});
  }

  get readable(): WebSocketByteStream {
    return this.stream;
  }

  get writable(): WebSocketByteStream {
    return this.stream;
  }

  accept(): void {}

  finish(): void {
    this.stream.end(() => {
      this.downEnded = true;
      this.closeIfDone();
    });
  }

  fail(error: GatewayError): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.close(WsCloseCode[wireCodeOf(error.code)], closeReason(error));
  }

  abort(): void {
    this.stream.destroy();
  }

  private closeIfDone(): void {
    if (this.upEnded && this.downEnded && this.ws.readyState === this.ws.OPEN) this.ws.close(1000, 'done');
  }
}
