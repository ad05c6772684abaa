import type tls from 'node:tls';
import { WebSocket } from 'ws';
import { Header, TUNNEL_PATH, WebSocketByteStream, WebSocketClosedError } from '@slipway/proto';
import { CliError } from './cliError.js';
import { TunnelStreamBase, tunnelError, type TunnelStream } from './tunnelStream.js';
import type { TunnelRequestHeaders } from './http2TunnelStream.js';

// A tunnel on its own WebSocket, for networks where HTTP/2 does not make it end to end.
export class WebSocketTunnelStream extends TunnelStreamBase implements TunnelStream {
  readonly bytes: WebSocketByteStream;
  private readonly ws: WebSocket;

  /** keepaliveMs: a ping this often (0: never), so a proxy's idle timeout does not cut a quiet build. */
  constructor(gatewayUrl: URL, socket: tls.TLSSocket, headers: TunnelRequestHeaders, keepaliveMs = 0) {
    super();
    const url = new URL(TUNNEL_PATH, gatewayUrl);
    url.protocol = 'wss:';
    const requestHeaders: Record<string, string> = {
      authorization: `Bearer ${headers.token}`,
      [Header.platform]: headers.platform,
      [Header.streamId]: headers.streamId,
    };
    if (headers.project) requestHeaders[Header.project] = headers.project;
    if (headers.session !== undefined) requestHeaders[Header.session] = headers.session;
    this.ws = new WebSocket(url, {
      headers: requestHeaders,
      perMessageDeflate: false,
      maxPayload: 16 * 1024 * 1024,
      createConnection: () => socket,
    } as never);
    this.bytes = new WebSocketByteStream(this.ws);
    this.bytes.on('error', (err) => {
      if (err instanceof WebSocketClosedError) {
        this.remoteEnd(tunnelError(err.wireCode, err.reason || `WebSocket closed with code ${err.closeCode}`, true));
      } else this.remoteEnd(new CliError('TUNNEL_FAILED', `tunnel WebSocket failed: ${err.message}`, { cause: err }));
    });
    this.bytes.on('end', () => this.remoteEnd(undefined));
    this.ws.on('open', () => {
      if (keepaliveMs > 0) {
        // Each WebSocket is its own connection through the proxy, so each needs its own pings;
        // the gateway's ws answers them with pongs, which keep the way back busy too.
        const ping = setInterval(() => {
          if (this.ws.readyState === this.ws.OPEN) this.ws.ping();
        }, keepaliveMs);
        ping.unref();
        this.ws.once('close', () => clearInterval(ping));
      }
      this.emit('open');
    });
    this.ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 4096) body += d;
      });
      res.on('end', () => {
        let message = `gateway answered HTTP ${res.statusCode}`;
        try {
          message = (JSON.parse(body) as { error: { message: string } }).error.message ?? message;
        } catch {
          // Not ours (a proxy's page, say): the status is the best there is.
        }
        this.remoteEnd(tunnelError(String(res.headers[Header.errorCode] ?? ''), `gateway refused the tunnel: ${message}`, false));
        this.bytes.destroy();
      });
    });
  }

  get readable(): WebSocketByteStream {
    return this.bytes;
  }

  get writable(): WebSocketByteStream {
    return this.bytes;
  }

  cancel(): void {
    this.bytes.destroy();
  }
}
