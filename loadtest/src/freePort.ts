import net from 'node:net';

// A TCP port on 127.0.0.1 that was free a moment ago, for programs that must be told their port
// (the gateway logs its bound port only at info level, and the bench runs it at warn).
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
