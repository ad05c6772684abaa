import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';

// Sends `totalBytes` of random data through a connection and hashes what comes back, both
// directions at once; resolves with the hashes of what was sent and received.
export function echoRoundTrip(socket: net.Socket, totalBytes: number, chunkBytes = 1024 * 1024): Promise<{ sent: string; received: string; receivedBytes: number }> {
  return new Promise((resolve, reject) => {
    const sentHash = createHash('sha256');
    const receivedHash = createHash('sha256');
    let receivedBytes = 0;
    let sentBytes = 0;
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      receivedHash.update(chunk);
      receivedBytes += chunk.length;
    });
    socket.on('end', () => resolve({ sent: sentHash.digest('hex'), received: receivedHash.digest('hex'), receivedBytes }));
    // One random block, varied per chunk by a counter, keeps generation cheap next to the tunnel.
    const block = randomBytes(chunkBytes);
    const write = (): void => {
      while (sentBytes < totalBytes) {
        const n = Math.min(chunkBytes, totalBytes - sentBytes);
        const chunk = Buffer.from(block.subarray(0, n));
        chunk.writeUInt32BE(sentBytes / chunkBytes, 0);
        sentHash.update(chunk);
        sentBytes += n;
        if (!socket.write(chunk)) {
          socket.once('drain', write);
          return;
        }
      }
      socket.end();
    };
    write();
  });
}

export function connectUnix(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path, allowHalfOpen: true });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

export function readAll(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}
