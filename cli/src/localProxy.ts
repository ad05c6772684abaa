import net from 'node:net';
import fs from 'node:fs';
import type { Logger, Platform } from '@slipway/proto';
import { CliError } from './cliError.js';
import type { ListenAddress } from './config.js';
import type { TunnelClient } from './tunnelClient.js';
import { bridgeLocal } from './localBridge.js';

function describe(address: ListenAddress): string {
  return address.kind === 'unix' ? `unix://${address.path}` : `tcp://${address.host}:${address.port}`;
}

// Local endpoints that unchanged Docker tooling connects to: every accepted connection becomes
// one tunnel stream to a builder of the given platform.
export class LocalProxy {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  readonly addresses: string[] = [];
  streamsOpened = 0;
  streamsFailed = 0;

  constructor(
    private readonly client: TunnelClient,
    private readonly platform: Platform,
    private readonly log: Logger,
  ) {}

  async listen(address: ListenAddress): Promise<string> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    server.on('error', (err) => this.log.error('local endpoint failed', { address: describe(address), reason: err.message }));
    if (address.kind === 'unix') {
      // A socket file left by a process that died would make listen() fail with EADDRINUSE.
      if (fs.existsSync(address.path)) {
        const alive = await new Promise<boolean>((resolve) => {
          const probe = net.connect(address.path);
          probe.on('connect', () => {
            probe.destroy();
            resolve(true);
          });
          probe.on('error', () => resolve(false));
        });
        if (alive) throw new CliError('CONFIG_INVALID', `${describe(address)} is already served by another process`);
        fs.rmSync(address.path, { force: true });
      }
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new CliError('CONFIG_INVALID', `cannot listen on ${describe(address)}: ${err.message}`, { cause: err })));
      if (address.kind === 'unix') server.listen(address.path, () => resolve());
      else server.listen(address.port, address.host, () => resolve());
    });
    if (address.kind === 'unix') fs.chmodSync(address.path, 0o600);
    this.servers.push(server);
    const bound = address.kind === 'unix' ? describe(address) : `tcp://${address.host}:${(server.address() as net.AddressInfo).port}`;
    this.addresses.push(bound);
    return bound;
  }

  /** A connection accepted elsewhere (the daemon's supervisor, which owns the sockets) becomes a tunnel stream here. */
  adopt(socket: net.Socket): void {
    this.accept(socket);
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => {});
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    this.streamsOpened++;
    bridgeLocal(
      {
        readable: socket,
        writable: socket,
        end: () => socket.end(),
        // A plain close would look like a clean end-of-stream to the local peer; on TCP a reset
        // says the stream failed. (Unix sockets have no reset: the peer sees EOF, and the failure
        // is on stderr.)
        destroy: () => (socket.remoteFamily ? socket.resetAndDestroy() : socket.destroy()),
      },
      this.client,
      this.platform,
      this.log,
    ).then((error) => {
      if (error) this.streamsFailed++;
    });
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }
}
