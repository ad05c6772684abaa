import type { Socket } from 'node:net';
import { HttpHeadError, readHttpResponseHead, type HttpResponseHead, type SessionAttachment } from '@slipway/proto';
import { AgentError } from './agentError.js';

// dockerd serves two things behind an HTTP/1.1 upgrade on its API socket:
//  - `/grpc`: BuildKit's gRPC API; after the 101 the client speaks HTTP/2 with prior knowledge
//    (it sends the preface itself);
//  - `/session`: a BuildKit session, registered under the id in its headers for the builds that
//    name it; after the 101 roles flip and dockerd is the HTTP/2 client (it sends the preface).

export interface DockerdUpgrade {
  /** For messages: "/grpc", "/session". */
  readonly path: string;
  readonly request: string;
}

export const GRPC_UPGRADE: DockerdUpgrade = {
  path: '/grpc',
  request: 'POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n',
};

/**
 * The `/session` upgrade for a session the client serves. The attachment must come from
 * parseSessionAttachment: its values are written into the request as they are.
 */
export function sessionUpgrade(session: SessionAttachment): DockerdUpgrade {
  const lines = [
    'POST /session HTTP/1.1',
    'Host: docker',
    'Connection: Upgrade',
    'Upgrade: h2c',
    'Content-Length: 0',
    `X-Docker-Expose-Session-Uuid: ${session.id}`,
    `X-Docker-Expose-Session-Name: ${session.name}`,
    `X-Docker-Expose-Session-Sharedkey: ${session.sharedKey}`,
    ...session.methods.map((method) => `X-Docker-Expose-Session-Grpc-Method: ${method}`),
  ];
  return { path: '/session', request: `${lines.join('\r\n')}\r\n\r\n` };
}

const EXPECTED_STATUS_LINE = 'HTTP/1.1 101 Switching Protocols';
// Enough for any real answer; a peer that streams more without ending the head is not dockerd.
export const MAX_UPGRADE_RESPONSE_HEAD_BYTES = 16 * 1024;
const BODY_EXCERPT_BYTES = 200;

/**
 * Performs an upgrade on a connected socket to dockerd. Resolves once dockerd has answered 101;
 * any bytes that arrived after the response head are pushed back into the socket (they are
 * dockerd's first HTTP/2 frames). On success no listeners of this function remain on the socket;
 * on failure the socket is destroyed. Rejects with the signal's reason when aborted.
 */
export async function upgradeDockerd(socket: Socket, address: string, upgrade: DockerdUpgrade, signal: AbortSignal): Promise<void> {
  if (signal.aborted) {
    socket.destroy();
    throw signal.reason;
  }
  const reading = readHttpResponseHead(socket, MAX_UPGRADE_RESPONSE_HEAD_BYTES, signal);
  socket.write(upgrade.request);
  let head: HttpResponseHead;
  try {
    head = await reading;
  } catch (err) {
    socket.destroy();
    if (signal.aborted) throw signal.reason;
    if (err instanceof HttpHeadError) {
      throw new AgentError('UPSTREAM_PROTOCOL', `dockerd at ${address} answered the ${upgrade.path} upgrade badly: ${err.message}; expected "${EXPECTED_STATUS_LINE}"`);
    }
    throw new AgentError('UPSTREAM_UNAVAILABLE', `connection to dockerd at ${address} failed during the ${upgrade.path} upgrade: ${(err as Error).message}`, { cause: err });
  }
  if (head.statusCode === 101) return;
  // Whatever of the body has already arrived makes the error self-explanatory.
  const excerpt = printable((socket.read() as Buffer | null) ?? Buffer.alloc(0));
  socket.destroy();
  throw new AgentError(
    'UPSTREAM_PROTOCOL',
    `dockerd at ${address} answered the ${upgrade.path} upgrade with "${printable(Buffer.from(head.statusLine, 'latin1'))}"; expected "${EXPECTED_STATUS_LINE}"` +
      (excerpt.length > 0 ? ` (body starts: ${JSON.stringify(excerpt)})` : ''),
  );
}

function printable(bytes: Buffer): string {
  return bytes.toString('utf8').replace(/[^\x20-\x7e]/g, '?').slice(0, BODY_EXCERPT_BYTES);
}
