import net from 'node:net';

// Where the bench client connects: the upstream itself over TCP, or a Slipway proxy's unix socket.
export type BenchEndpoint = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export function describeEndpoint(endpoint: BenchEndpoint): string {
  return endpoint.kind === 'tcp' ? `tcp://${endpoint.host}:${endpoint.port}` : `unix://${endpoint.path}`;
}

// Starts a connection; writes may be issued at once (they wait in the socket until it connects).
// The caller owns the socket and adds its own `error` listener before the next tick.
export function connectEndpoint(endpoint: BenchEndpoint): net.Socket {
  return endpoint.kind === 'tcp' ? net.connect({ host: endpoint.host, port: endpoint.port, noDelay: true }) : net.connect({ path: endpoint.path });
}
