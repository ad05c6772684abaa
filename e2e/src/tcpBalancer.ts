import net from 'node:net';
import { pipeline } from 'node:stream';

export interface TcpBalancer {
  port: number;
  /** https://127.0.0.1:PORT */
  url: string;
  /** Backend ports, tried in order for each new connection; the first that accepts gets it. */
  backends: number[];
  close(): Promise<void>;
}

// A TCP load balancer in front of gateway replicas, as a network load balancer would be: each
// connection goes to the first backend that accepts it, so a dead replica is skipped.
export async function startTcpBalancer(backends: number[]): Promise<TcpBalancer> {
  const sockets = new Set<net.Socket>();
  const state = { backends: [...backends] };
  const connectFirst = (ports: number[]): Promise<net.Socket | undefined> =>
    ports.reduce<Promise<net.Socket | undefined>>(
      (found, port) =>
        found.then(
          (s) =>
            s ??
            new Promise((resolve) => {
              const upstream = net.connect(port, '127.0.0.1');
              upstream.once('connect', () => resolve(upstream));
              upstream.once('error', () => resolve(undefined));
            }),
        ),
      Promise.resolve(undefined),
    );
  const server = net.createServer((client) => {
    client.on('error', () => {});
    client.pause();
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    void connectFirst(state.backends).then((upstream) => {
      if (!upstream) {
        client.destroy();
        return;
      }
      upstream.on('error', () => {});
      sockets.add(upstream);
      upstream.once('close', () => sockets.delete(upstream));
      pipeline(client, upstream, () => upstream.destroy());
      pipeline(upstream, client, () => client.destroy());
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `https://127.0.0.1:${port}`,
    get backends() {
      return state.backends;
    },
    set backends(value: number[]) {
      state.backends = [...value];
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
