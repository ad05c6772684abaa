import net from 'node:net';
import { COUNT_BYTES, Mode, decodeCount, encodeCount } from './upstreamProtocol.js';

// Payload for download mode: one buffer written again and again. Random rather than zeros so that
// nothing on the path can get away with less work than it would for a real build's bytes.
const SOURCE_CHUNK = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i * 2654435761) >>> 24));

// A raw-bytes stand-in for BuildKit: see upstreamProtocol.ts for the protocol.
export function createUpstreamServer(): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true }, serve);
}

function serve(socket: net.Socket): void {
  socket.on('error', () => socket.destroy());
  let mode: number | undefined;
  let header = Buffer.alloc(0);
  let uploaded = 0;
  const onData = (chunk: Buffer): void => {
    if (mode === undefined) {
      mode = chunk[0]!;
      chunk = chunk.subarray(1);
      if (mode !== Mode.echo && mode !== Mode.upload && mode !== Mode.download) {
        socket.destroy();
        return;
      }
    }
    if (mode === Mode.echo) {
      if (chunk.length > 0 && !socket.write(chunk)) socket.pause();
    } else if (mode === Mode.upload) {
      uploaded += chunk.length;
    } else if (header.length < COUNT_BYTES) {
      header = Buffer.concat([header, chunk]);
      if (header.length >= COUNT_BYTES) {
        socket.off('data', onData);
        // Whatever the client sends after the request is not part of the protocol; drop it.
        socket.resume();
        sendBytes(socket, decodeCount(header));
      }
    }
  };
  socket.on('data', onData);
  socket.on('drain', () => {
    if (mode === Mode.echo) socket.resume();
  });
  socket.on('end', () => {
    if (mode === Mode.upload) socket.end(encodeCount(uploaded));
    else if (mode === Mode.echo || mode === undefined) socket.end();
    // Download: the client may half-close right after its request; the server ends when sent.
  });
}

function sendBytes(socket: net.Socket, total: number): void {
  let left = total;
  const writeSome = (): void => {
    while (left > 0 && !socket.destroyed) {
      const n = Math.min(left, SOURCE_CHUNK.length);
      left -= n;
      if (!socket.write(n === SOURCE_CHUNK.length ? SOURCE_CHUNK : SOURCE_CHUNK.subarray(0, n))) {
        socket.once('drain', writeSome);
        return;
      }
    }
    if (left === 0) socket.end();
  };
  writeSome();
}
