import { Duplex } from 'node:stream';
import type { WebSocket, RawData } from 'ws';
import { WS_EOF, wireCodeForWsClose, type WireErrorCode } from './tunnelProtocol.js';

export class WebSocketClosedError extends Error {
  override readonly name = 'WebSocketClosedError';
  constructor(
    readonly closeCode: number,
    readonly reason: string,
    readonly wireCode: WireErrorCode | undefined,
  ) {
    super(reason ? `WebSocket closed with code ${closeCode}: ${reason}` : `WebSocket closed with code ${closeCode}`);
  }
}

// A tunnel stream carried by a WebSocket, as a byte Duplex with half-close: binary messages are
// bytes, an empty binary message is end-of-stream in the sender's direction. Backpressure: the
// socket is paused while our readable buffer is full, and a write completes only when ws has
// handed it to the socket, so neither direction buffers without bound.
export class WebSocketByteStream extends Duplex {
  private eofReceived = false;

  constructor(private readonly ws: WebSocket) {
    super({ allowHalfOpen: true, readableHighWaterMark: 1024 * 1024, writableHighWaterMark: 1024 * 1024 });
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) {
        this.destroy(new Error('tunnel WebSocket received a text message; only binary messages are allowed'));
        return;
      }
      const chunk = data as Buffer;
      if (chunk.length === 0) {
        this.eofReceived = true;
        this.push(null);
        return;
      }
      if (this.eofReceived) {
        this.destroy(new Error('tunnel WebSocket received data after end-of-stream'));
        return;
      }
      if (!this.push(chunk)) ws.pause();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (code === 1000 || code === 1005) {
        if (!this.eofReceived) this.destroy(new WebSocketClosedError(code, 'peer closed before end-of-stream', undefined));
        return;
      }
      const text = reason.toString('utf8');
      this.destroy(new WebSocketClosedError(code, text, wireCodeForWsClose(code)));
    });
    ws.on('error', (err: Error) => this.destroy(err));
  }

  override _read(): void {
    this.ws.resume();
  }

  // Bytes written while the handshake is still under way wait for it (within the writable's
  // buffer), so callers may write as soon as they have the stream.
  private send(data: Buffer, callback: (error?: Error | null) => void): void {
    if (this.ws.readyState === this.ws.CONNECTING) {
      const onOpen = (): void => {
        this.ws.off('close', onClose);
        this.ws.send(data, { binary: true }, callback);
      };
      const onClose = (): void => {
        this.ws.off('open', onOpen);
        callback(new Error('tunnel WebSocket closed before it opened'));
      };
      this.ws.once('open', onOpen);
      this.ws.once('close', onClose);
      return;
    }
    this.ws.send(data, { binary: true }, callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.send(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.send(Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.send(WS_EOF, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const open = this.ws.readyState === this.ws.OPEN;
    if (error === null && open && this.eofReceived && this.writableFinished) {
      // Both directions ended (this is autoDestroy): close with the handshake, whose frame goes
      // out behind whatever is still queued on the socket. terminate() would drop that tail (a
      // write's callback means ws handed it to the socket, not that it left).
      this.ws.close(1000, 'done');
    } else if (open || this.ws.readyState === this.ws.CONNECTING) {
      this.ws.terminate();
    }
    callback(error);
  }
}
