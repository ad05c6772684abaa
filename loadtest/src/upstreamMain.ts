// The bench upstream as its own process, so its CPU is not the bench client's or Slipway's.
// Prints one line `UPSTREAM_READY {"port":N}` once it listens on 127.0.0.1; exits on SIGTERM/SIGINT.
import type { AddressInfo } from 'node:net';
import { createUpstreamServer } from './upstreamServer.js';

const server = createUpstreamServer();
server.on('error', (err) => {
  process.stderr.write(`bench upstream: ${err.message}\n`);
  process.exit(3);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`UPSTREAM_READY ${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
// The parent going away (its stdin pipe closes) means nobody will stop us: go too.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
