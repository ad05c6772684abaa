// A unix-socket relay that counts the connections it carries: put in front of a builder's
// upstream, its count is proof that a build reached that builder (the agent's counter).
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { pipeline } from 'node:stream';

export interface CountingRelay {
  /** Where to connect: unix://<path>. */
  readonly address: string;
  readonly path: string;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

export async function startCountingRelay(listenPath: string, targetPath: string): Promise<CountingRelay> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const track = (socket: net.Socket): net.Socket => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    return socket;
  };
  const server = net.createServer({ allowHalfOpen: true }, (inbound) => {
    connections++;
    track(inbound);
    const outbound = track(net.connect({ path: targetPath, allowHalfOpen: true }));
    pipeline(inbound, outbound, () => {});
    pipeline(outbound, inbound, () => {});
  });
  fs.rmSync(listenPath, { force: true });
  server.listen(listenPath);
  await once(server, 'listening');
  return {
    address: `unix://${listenPath}`,
    path: listenPath,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
