// An HTTP CONNECT proxy for tests that need what squid will not do on request: inspect TLS (end
// the client's TLS with a certificate of its own CA, speaking only HTTP/1.1, and open its own TLS
// to the target), or drop tunnels that have been idle for a while, as corporate proxies and NATs
// do. Loopback only; every socket is torn down by close().
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { pipeline } from 'node:stream';
import type { InspectionCa } from './inspectionCa.js';

export interface ConnectProxyOptions {
  /** Terminate TLS inside each tunnel with a certificate from this CA, re-originating to the target. */
  inspect?: {
    ca: InspectionCa;
    /** What the proxy trusts for the targets' certificates. */
    upstreamCa: string | Buffer;
    /** ALPN offered to clients and to targets (default http/1.1 only, like most inspecting appliances). */
    alpn?: string[];
  };
  /** Tear a tunnel down once no byte has crossed it, either way, for this long. */
  idleTimeoutMs?: number;
}

export interface ConnectProxy {
  readonly port: number;
  /** http://127.0.0.1:PORT, for HTTPS_PROXY. */
  readonly url: string;
  /** CONNECT requests accepted so far. */
  readonly connects: number;
  /** Tunnels torn down for being idle. */
  readonly idleClosed: number;
  /** With inspect: the ALPN protocols each client offered, one list per TLS connection. */
  readonly offeredAlpn: string[][];
  close(): Promise<void>;
}

export async function startConnectProxy(options: ConnectProxyOptions = {}): Promise<ConnectProxy> {
  const sockets = new Set<net.Socket>();
  const counts = { connects: 0, idleClosed: 0 };
  const offeredAlpn: string[][] = [];
  const track = <T extends net.Socket>(socket: T): T => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    return socket;
  };

  const server = net.createServer((client) => {
    track(client);
    let head = '';
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16 * 1024) client.destroy();
        return;
      }
      client.off('data', onData);
      client.pause();
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      const match = /^CONNECT (\[[^\]]+\]|[^:\s]+):(\d+) HTTP\/1\.[01]\r\n/.exec(head);
      if (!match) {
        client.end('HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      counts.connects++;
      const host = match[1]!.replace(/^\[|\]$/g, '');
      const port = Number(match[2]);
      if (rest.length > 0) client.unshift(rest);
      void (options.inspect ? inspected(client, host, port, options.inspect) : plain(client, host, port)).catch(() => client.destroy());
    };
    client.on('data', onData);
  });

  const plain = async (client: net.Socket, host: string, port: number): Promise<void> => {
    const upstream = track(net.connect({ host, port }));
    await once(upstream, 'connect');
    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    join(client, upstream);
  };

  const inspected = async (client: net.Socket, host: string, port: number, inspect: NonNullable<ConnectProxyOptions['inspect']>): Promise<void> => {
    const alpn = inspect.alpn ?? ['http/1.1'];
    const leaf = await inspect.ca.leafFor(host);
    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    const inner = track(
      new tls.TLSSocket(client, {
        isServer: true,
        key: leaf.keyPem,
        cert: `${leaf.certPem}${inspect.ca.certPem}`,
        ALPNCallback: ({ protocols }: { protocols: string[] }) => {
          offeredAlpn.push([...protocols]);
          return protocols.find((p) => alpn.includes(p));
        },
      } as tls.TLSSocketOptions),
    );
    client.resume();
    await once(inner, 'secure');
    const upstream = track(tls.connect({ host, port, ca: inspect.upstreamCa, servername: net.isIP(host) ? undefined : host, ALPNProtocols: alpn }));
    await once(upstream, 'secureConnect');
    join(inner, upstream);
  };

  const join = (a: net.Socket, b: net.Socket): void => {
    let idle: NodeJS.Timeout | undefined;
    const teardown = (): void => {
      clearTimeout(idle);
      a.destroy();
      b.destroy();
    };
    if (options.idleTimeoutMs !== undefined) {
      const limit = options.idleTimeoutMs;
      const touch = (): void => {
        clearTimeout(idle);
        idle = setTimeout(() => {
          counts.idleClosed++;
          teardown();
        }, limit);
      };
      a.on('data', touch);
      b.on('data', touch);
      touch();
    }
    pipeline(a, b, a, () => teardown());
  };

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get connects() {
      return counts.connects;
    },
    get idleClosed() {
      return counts.idleClosed;
    },
    offeredAlpn,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
