// The proxy daemon's working half (`slipway daemon worker`), started and restarted by the
// supervisor: each connection the supervisor hands over becomes a tunnel stream to a builder of
// the socket's platform. One tunnel client per platform, so a platform without builders (its
// acquire waiting, or refused) never holds up the others' builds.
import type net from 'node:net';
import type { Logger, Platform } from '@slipway/proto';
import { LocalProxy } from './localProxy.js';
import { TunnelClient, type TunnelClientOptions } from './tunnelClient.js';

export class DaemonWorker {
  private readonly proxies = new Map<Platform, { client: TunnelClient; proxy: LocalProxy }>();

  constructor(
    platforms: readonly Platform[],
    clientOptions: Omit<TunnelClientOptions, 'log'>,
    private readonly log: Logger,
  ) {
    for (const platform of platforms) {
      const client = new TunnelClient({ ...clientOptions, log });
      this.proxies.set(platform, { client, proxy: new LocalProxy(client, platform, log) });
    }
  }

  /** A connection accepted on the platform's socket. */
  adopt(platform: Platform, socket: net.Socket): void {
    socket.on('error', () => {});
    const entry = this.proxies.get(platform);
    if (entry === undefined) {
      this.log.warn('connection for a platform this worker does not serve', { platform });
      socket.destroy();
      return;
    }
    // The socket was rebuilt in this process from its handle, with Node's default of ending our
    // side when the peer ends its own; a tunnel stream half-closes each way on its own.
    socket.allowHalfOpen = true;
    entry.proxy.adopt(socket);
  }

  /** The tunnel client of one platform (to exchange a CI token up front, say). */
  client(platform: Platform): TunnelClient | undefined {
    return this.proxies.get(platform)?.client;
  }

  /** Ends every stream and finishes the builds. */
  async close(): Promise<void> {
    await Promise.all([...this.proxies.values()].map(async ({ client, proxy }) => {
      await proxy.close();
      await client.close();
    }));
  }
}
