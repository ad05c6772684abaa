import http2, { type ClientHttp2Stream } from 'node:http2';
import type { Readable, Writable } from 'node:stream';
import { Header, STREAM_END_CLEAN, pump, type Pump } from '@slipway/proto';
import { GatewayError, agentReportedError } from './gatewayError.js';
import type { StreamRequest } from './agentLink.js';

// The client's end of a tunnel stream, whatever carries it (an HTTP/2 stream or a WebSocket).
export interface ClientEnd {
  readonly readable: Readable;
  readonly writable: Writable;
  // The agent accepted the stream: let the client know, if its transport has a way to.
  accept(): void;
  // Everything from the agent has been written: half-close toward the client.
  finish(): void;
  // Report the failure to the client in its transport's terms, then tear down.
  fail(error: GatewayError): void;
  // The client is gone or the stream is abandoned: release everything, say nothing.
  abort(): void;
}

// Where a tunnel stream goes: an agent link held by this replica, or a forward to the replica
// that holds one. Either answers in the agent stream protocol (status, body, trailers).
export interface StreamTarget {
  readonly agentId: string;
  readonly closed: boolean;
  hasCapacity(): boolean;
  openStream(request: StreamRequest): ClientHttp2Stream;
  // Carries the stream on a lane to the agent when one is idle (only a link held here has lanes).
  carryOnLane?(client: ClientEnd, request: StreamRequest): Promise<SpliceResult> | undefined;
}

export interface SpliceResult {
  error: GatewayError | undefined;
  bytesUp: number;
  bytesDown: number;
}

function agentError(headers: http2.IncomingHttpHeaders, fallback: string): GatewayError {
  const code = String(headers[Header.errorCode] ?? '');
  const message = String(headers[Header.errorMessage] ?? fallback);
  return agentReportedError(code, message);
}

// Joins a client end to a stream opened on an agent, both directions independent (half-close
// travels each way on its own), and settles once: when both directions ended cleanly, or at the
// first failure, which is reported to the client with a code before anything is torn down.
export function splice(client: ClientEnd, agentStream: ClientHttp2Stream, link: StreamTarget): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let upDone = false;
    let downDone = false;
    let settled = false;
    let trailerError: GatewayError | undefined;
    let endedCleanly = false;
    let down: Pump | undefined;
    const detach = (): void => {
      up.stop();
      down?.stop();
    };

    const settle = (error: GatewayError | undefined): void => {
      if (settled) return;
      settled = true;
      detach();
      resolve({ error, bytesUp: up.bytes, bytesDown: down?.bytes ?? 0 });
    };
    const maybeDone = (): void => {
      if (upDone && downDone) settle(undefined);
    };
    const failFromAgent = (error: GatewayError): void => {
      if (settled) return;
      client.fail(error);
      if (!agentStream.closed) agentStream.close(http2.constants.NGHTTP2_CANCEL);
      settle(error);
    };
    const clientGone = (why: string): void => {
      if (settled) return;
      if (!agentStream.closed) agentStream.close(http2.constants.NGHTTP2_CANCEL);
      client.abort();
      settle(new GatewayError('BAD_REQUEST', why));
    };

    const up = pump(client.readable, agentStream, () => {
      upDone = true;
      agentStream.end();
      maybeDone();
    });
    client.readable.on('error', (err) => clientGone(`client stream failed: ${err.message}`));
    client.readable.on('close', () => {
      if (!upDone) clientGone('client closed the stream before ending it');
    });

    agentStream.on('response', (headers) => {
      const status = headers[':status'];
      if (status !== 200) {
        failFromAgent(agentError(headers, `agent ${link.agentId} refused the stream with HTTP ${status}`));
        return;
      }
      client.accept();
      down = pump(agentStream, client.writable, () => {
        if (trailerError) {
          failFromAgent(trailerError);
          return;
        }
        if (!endedCleanly) {
          // The agent always ends with trailers; a body that stops without them means the
          // link went down under it, whether or not the link has noticed yet.
          failFromAgent(new GatewayError('AGENT_LOST', `agent ${link.agentId} was lost: its stream was cut off before it ended`));
          return;
        }
        downDone = true;
        client.finish();
        maybeDone();
      });
    });
    agentStream.on('trailers', (trailers) => {
      if (trailers[Header.errorCode] !== undefined) trailerError = agentError(trailers, 'upstream failed');
      else if (trailers[Header.streamEnd] === STREAM_END_CLEAN) endedCleanly = true;
    });
    const lost = (detail: string): GatewayError =>
      link.closed ? new GatewayError('AGENT_LOST', `agent ${link.agentId} was lost: ${detail}`) : new GatewayError('UPSTREAM_FAILED', detail);
    agentStream.on('error', (err) => failFromAgent(lost(err.message)));
    agentStream.on('close', () => {
      if (downDone && !upDone) {
        // The agent finished its direction and closed: the upstream is gone both ways, so
        // whatever the client still sends has nowhere to go. Drop it quietly.
        detach();
        client.readable.resume();
        upDone = true;
        maybeDone();
        return;
      }
      if (!downDone || !upDone) {
        const code = agentStream.rstCode;
        failFromAgent(lost(`agent ${link.agentId} closed the stream${code ? ` (HTTP/2 code ${code})` : ''} before it completed`));
      }
    });
  });
}
