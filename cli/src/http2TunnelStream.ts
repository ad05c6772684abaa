import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { Header, STREAM_END_CLEAN, TUNNEL_PATH } from '@slipway/proto';
import { CliError } from './cliError.js';
import { leaveIfDraining } from './drainingReplica.js';
import { TunnelStreamBase, tunnelError, type TunnelStream } from './tunnelStream.js';

export interface TunnelRequestHeaders {
  token: string;
  platform: string;
  project: string | undefined;
  streamId: string;
  /** A BuildKit session the stream attaches (proto's sessionAttachment.ts), as the header's JSON. */
  session?: string;
}

// A tunnel on one HTTP/2 stream: request body up, response body down; the response's trailers
// say whether the far side ended cleanly.
export class Http2TunnelStream extends TunnelStreamBase implements TunnelStream {
  readonly stream: ClientHttp2Stream;
  private accepted = false;
  private failure: CliError | undefined;
  private endedCleanly = false;

  constructor(session: ClientHttp2Session, headers: TunnelRequestHeaders) {
    super();
    const outgoing: http2.OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': TUNNEL_PATH,
      authorization: `Bearer ${headers.token}`,
      [Header.platform]: headers.platform,
      [Header.streamId]: headers.streamId,
    };
    if (headers.project) outgoing[Header.project] = headers.project;
    if (headers.session !== undefined) outgoing[Header.session] = headers.session;
    this.stream = session.request(outgoing);
    this.stream.on('error', (err) => this.fail(new CliError('TUNNEL_FAILED', `tunnel stream failed: ${err.message}`, { cause: err })));
    this.stream.on('response', (h) => {
      leaveIfDraining(session, h);
      const status = h[':status'];
      if (status === 200) {
        this.accepted = true;
        this.emit('open');
        return;
      }
      // Refused before any agent was involved: the body is JSON with the details.
      let body = '';
      this.stream.setEncoding('utf8');
      this.stream.on('data', (d: string) => {
        if (body.length < 4096) body += d;
      });
      this.stream.on('end', () => {
        let message = String(h[Header.errorMessage] ?? `gateway answered HTTP ${status}`);
        try {
          message = (JSON.parse(body) as { error: { message: string } }).error.message ?? message;
        } catch {
          // The header already says it.
        }
        this.fail(tunnelError(String(h[Header.errorCode] ?? ''), `gateway refused the tunnel: ${message}`, false));
      });
    });
    this.stream.on('trailers', (t) => {
      if (t[Header.errorCode] !== undefined) {
        this.failure = tunnelError(String(t[Header.errorCode]), String(t[Header.errorMessage] ?? 'tunnel failed'), true);
      } else if (t[Header.streamEnd] === STREAM_END_CLEAN) this.endedCleanly = true;
    });
    this.stream.on('end', () => {
      if (!this.accepted) return;
      this.remoteEnd(
        this.failure ?? (this.endedCleanly ? undefined : new CliError('TUNNEL_FAILED', 'tunnel stream was cut off before it ended (the gateway connection was lost)')),
      );
    });
    this.stream.on('close', () => {
      if (!this.stream.readableEnded) {
        const code = this.stream.rstCode;
        this.fail(new CliError('TUNNEL_FAILED', `tunnel stream was reset${code ? ` (HTTP/2 code ${code})` : ''} before it completed`));
      }
    });
  }

  get readable(): ClientHttp2Stream {
    return this.stream;
  }

  get writable(): ClientHttp2Stream {
    return this.stream;
  }

  private fail(error: CliError): void {
    this.remoteEnd(error);
  }

  cancel(): void {
    if (!this.stream.closed) this.stream.close(http2.constants.NGHTTP2_CANCEL);
  }
}
