import type { Socket } from 'node:net';
import { HttpHeadError, readHttpResponseHead, type HttpResponseHead } from '@slipway/proto';
import { AgentError } from './agentError.js';

// dockerd serves BuildKit's gRPC API behind an HTTP/1.1 upgrade on its API socket; after the 101
// the client speaks HTTP/2 with prior knowledge (it sends the preface itself).
const UPGRADE_REQUEST =
  'POST /grpc HTTP/1.1\r\n' +
  'Host: docker\r\n' +
  'Connection: Upgrade\r\n' +
  'Upgrade: h2c\r\n' +
  'Content-Length: 0\r\n' +
  '\r\n';

const EXPECTED_STATUS_LINE = 'HTTP/1.1 101 Switching Protocols';
// Enough for any real answer; a peer that streams more without ending the head is not dockerd.
export const MAX_UPGRADE_RESPONSE_HEAD_BYTES = 16 * 1024;
const BODY_EXCERPT_BYTES = 200;

/**
 * Performs the `/grpc` upgrade on a connected socket to dockerd. Resolves once dockerd has
 * answered 101; any bytes that arrived after the response head are pushed back into the socket
 * (they are dockerd's first HTTP/2 frames). On success no listeners of this function remain on the
 * socket; on failure the socket is destroyed. Rejects with the signal's reason when aborted.
 */
export async function upgradeToDockerdGrpc(socket: Socket, address: string, signal: AbortSignal): Promise<void> {
  if (signal.aborted) {
    socket.destroy();
    throw signal.reason;
  }
  const reading = readHttpResponseHead(socket, MAX_UPGRADE_RESPONSE_HEAD_BYTES, signal);
  socket.write(UPGRADE_REQUEST);
  let head: HttpResponseHead;
  try {
    head = await reading;
  } catch (err) {
    socket.destroy();
    if (signal.aborted) throw signal.reason;
    if (err instanceof HttpHeadError) {
      throw new AgentError('UPSTREAM_PROTOCOL', `dockerd at ${address} answered the /grpc upgrade badly: ${err.message}; expected "${EXPECTED_STATUS_LINE}"`);
    }
    throw new AgentError('UPSTREAM_UNAVAILABLE', `connection to dockerd at ${address} failed during the /grpc upgrade: ${(err as Error).message}`, { cause: err });
  }
  if (head.statusCode === 101) return;
  // Whatever of the body has already arrived makes the error self-explanatory.
  const excerpt = printable((socket.read() as Buffer | null) ?? Buffer.alloc(0));
  socket.destroy();
  throw new AgentError(
    'UPSTREAM_PROTOCOL',
    `dockerd at ${address} answered the /grpc upgrade with "${printable(Buffer.from(head.statusLine, 'latin1'))}"; expected "${EXPECTED_STATUS_LINE}"` +
      (excerpt.length > 0 ? ` (body starts: ${JSON.stringify(excerpt)})` : ''),
  );
}

function printable(bytes: Buffer): string {
  return bytes.toString('utf8').replace(/[^\x20-\x7e]/g, '?').slice(0, BODY_EXCERPT_BYTES);
}
