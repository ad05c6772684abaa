import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { EventEmitter, once } from 'node:events';
import type net from 'node:net';
import tls from 'node:tls';
import { AGENT_CONNECT_PATH, AGENT_STREAM_PATH, AGENT_UPGRADE_PROTOCOL, Header } from '@slipway/proto';
import type { TestTls } from './testTls.js';

// One agent link as the fake gateway sees it.
export interface FakeLink {
  /** Order in which the upgrade requests arrived at this server, from 0. */
  index: number;
  /** The id this server named itself with on the 101. */
  gatewayId: string;
  session: ClientHttp2Session;
  /** The agent's HTTP/2 SETTINGS arrived: it serves HTTP/2 on this link. */
  served: boolean;
  goawayReceived: boolean;
  closed: boolean;
}

// Plays a gateway replica for the agent: real TLS on port 0, the slipway-agent/1 upgrade with
// slipway-gateway-id on the 101, then, like the real gateway, a native HTTP/2 client on the
// upgraded connection. It never closes a link by itself unless stopped, so a link that closes
// while it runs was closed by the agent. idFor names the replica per link, which lets one server
// stand in for a load balancer that sends links to different replicas.
export class FakeGateway extends EventEmitter<{ link: [FakeLink]; closed: [FakeLink] }> {
  readonly links: FakeLink[] = [];
  private readonly server: tls.Server;
  private readonly sockets = new Set<net.Socket>();
  private port = 0;
  private upgrades = 0;

  constructor(
    pki: TestTls,
    private readonly idFor: (index: number) => string,
  ) {
    super();
    this.server = tls.createServer({ key: pki.serverKeyPem, cert: pki.serverCertPem, ALPNProtocols: ['http/1.1'] }, (socket) => this.accept(socket));
    this.server.on('error', () => {});
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  openLinks(): FakeLink[] {
    return this.links.filter((link) => !link.closed);
  }

  // Listens on port 0 the first time, then on the same port again (a replica coming back).
  async listen(): Promise<void> {
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  // The replica dies: no more connections, and every link it had is cut.
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  // A request the agent answers with 404, showing it serves HTTP/2 on this link.
  async probe(link: FakeLink): Promise<number> {
    const request = link.session.request({ ':method': 'GET', ':path': '/probe' }, { endStream: true });
    request.on('error', () => {});
    const [headers] = (await once(request, 'response')) as [http2.IncomingHttpHeaders];
    request.resume();
    return Number(headers[':status']);
  }

  // A tunnel stream toward the agent's upstream, as the gateway opens one for a client.
  openStream(link: FakeLink, streamId: string): ClientHttp2Stream {
    const stream = link.session.request({
      ':method': 'POST',
      ':path': AGENT_STREAM_PATH,
      [Header.streamId]: streamId,
      [Header.project]: 'test',
      [Header.platform]: 'linux/amd64',
    });
    stream.on('error', () => {});
    return stream;
  }

  private accept(socket: tls.TLSSocket): void {
    socket.on('error', () => {});
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    let head = '';
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      socket.pause();
      const [requestLine = '', ...lines] = head.slice(0, head.indexOf('\r\n\r\n')).split('\r\n');
      const upgrade = lines.find((line) => /^upgrade:/i.test(line))?.split(':')[1]?.trim();
      if (requestLine !== `GET ${AGENT_CONNECT_PATH} HTTP/1.1` || upgrade !== AGENT_UPGRADE_PROTOCOL) {
        socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const index = this.upgrades++;
      const gatewayId = this.idFor(index);
      // Wait for the 101 to be written before HTTP/2 takes the socket over, as the gateway does.
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${AGENT_UPGRADE_PROTOCOL}\r\n${Header.gatewayId}: ${gatewayId}\r\n\r\n`, () =>
        this.link(socket, index, gatewayId),
      );
    };
    socket.on('data', onData);
  }

  private link(socket: tls.TLSSocket, index: number, gatewayId: string): void {
    const session = http2.connect('http://agent.invalid', { createConnection: () => socket });
    session.on('error', () => {});
    const link: FakeLink = { index, gatewayId, session, served: false, goawayReceived: false, closed: false };
    this.links.push(link);
    session.on('remoteSettings', () => {
      link.served = true;
    });
    session.on('goaway', () => {
      link.goawayReceived = true;
    });
    const onClose = (): void => {
      if (link.closed) return;
      link.closed = true;
      this.emit('closed', link);
    };
    socket.once('close', onClose);
    session.once('close', onClose);
    if (socket.destroyed) onClose();
    this.emit('link', link);
  }
}
