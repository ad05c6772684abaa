import net from 'node:net';
import { createHash } from 'node:crypto';

export interface EchoServer {
  port: number;
  address: string;
  connections: number;
  /** Connections that carried at least one byte: the agent also dials spares that may never be used. */
  dataConnections: number;
  close(): Promise<void>;
}

// A TCP upstream that echoes every byte and half-closes when its peer does: what a tunnel must
// carry byte-exactly, in both directions, with half-close intact.
export async function startEchoServer(): Promise<EchoServer> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0, dataConnections: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    let carried = false;
    socket.on('data', (chunk) => {
      if (!carried) {
        carried = true;
        state.dataConnections++;
      }
      if (!socket.write(chunk)) socket.pause();
    });
    socket.on('drain', () => socket.resume());
    socket.on('end', () => socket.end());
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    address: `tcp://127.0.0.1:${port}`,
    get connections() {
      return state.connections;
    },
    get dataConnections() {
      return state.dataConnections;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
