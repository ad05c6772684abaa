import type { Socket } from 'node:net';
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
const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/;
// Enough for any real answer; a peer that streams more without ending the head is not dockerd.
export const MAX_UPGRADE_RESPONSE_HEAD_BYTES = 16 * 1024;
const BODY_EXCERPT_BYTES = 200;

/**
 * Performs the `/grpc` upgrade on a connected socket to dockerd. Resolves once dockerd has
 * answered 101; any bytes that arrived after the response head are pushed back into the socket
 * (they are dockerd's first HTTP/2 frames). On success no listeners of this function remain on the
 * socket; on failure the socket is destroyed. Rejects with the signal's reason when aborted.
 */
export function upgradeToDockerdGrpc(socket: Socket, address: string, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      socket.destroy();
      reject(signal.reason);
      return;
    }
    let buffered: Buffer = Buffer.alloc(0);
    let settled = false;

    const settle = (err: unknown, rest?: Buffer): void => {
      if (settled) return;
      settled = true;
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onClose);
      socket.off('error', onError);
      signal.removeEventListener('abort', onAbort);
      if (err !== undefined) {
        socket.destroy();
        reject(err);
        return;
      }
      if (rest !== undefined && rest.length > 0) socket.unshift(rest);
      resolve();
    };

    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        // Start the search a little before the new chunk: the terminator may straddle chunks.
        const searchFrom = Math.max(0, buffered.length - (HEAD_END.length - 1));
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        const headEnd = buffered.indexOf(HEAD_END, searchFrom);
        if (headEnd < 0) {
          if (buffered.length > MAX_UPGRADE_RESPONSE_HEAD_BYTES) {
            settle(
              new AgentError(
                'UPSTREAM_PROTOCOL',
                `dockerd at ${address} sent more than ${MAX_UPGRADE_RESPONSE_HEAD_BYTES} bytes without ending the response head of the /grpc upgrade; expected "${EXPECTED_STATUS_LINE}" and a short head`,
              ),
            );
          }
          continue;
        }
        if (headEnd > MAX_UPGRADE_RESPONSE_HEAD_BYTES) {
          settle(
            new AgentError(
              'UPSTREAM_PROTOCOL',
              `dockerd at ${address} answered the /grpc upgrade with a ${headEnd}-byte response head; at most ${MAX_UPGRADE_RESPONSE_HEAD_BYTES} bytes are accepted`,
            ),
          );
          return;
        }
        const head = buffered.subarray(0, headEnd).toString('latin1');
        const rest = buffered.subarray(headEnd + HEAD_END.length);
        settle(checkHead(head, rest, address), rest);
      }
    };

    const onEnd = (): void => {
      settle(
        new AgentError(
          'UPSTREAM_PROTOCOL',
          `dockerd at ${address} closed the connection after ${buffered.length} bytes, before finishing its answer to the /grpc upgrade; expected "${EXPECTED_STATUS_LINE}"`,
        ),
      );
    };
    const onClose = onEnd;
    const onError = (err: Error): void => {
      settle(
        new AgentError('UPSTREAM_UNAVAILABLE', `connection to dockerd at ${address} failed during the /grpc upgrade: ${err.message}`, {
          cause: err,
        }),
      );
    };
    const onAbort = (): void => settle(signal.reason);

    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
    socket.write(UPGRADE_REQUEST);
  });
}

// Returns undefined when the head is an acceptable 101, otherwise the error to report.
function checkHead(head: string, rest: Buffer, address: string): AgentError | undefined {
  const statusLine = head.split('\r\n', 1)[0] ?? '';
  const match = STATUS_LINE.exec(statusLine);
  if (match?.[1] === '101') return undefined;
  const what = match ? 'answered' : 'answered with something that is not an HTTP/1.x status line';
  const excerpt = printable(rest.subarray(0, BODY_EXCERPT_BYTES));
  return new AgentError(
    'UPSTREAM_PROTOCOL',
    `dockerd at ${address} ${what} the /grpc upgrade with "${printable(Buffer.from(statusLine, 'latin1'))}"; expected "${EXPECTED_STATUS_LINE}"` +
      (excerpt.length > 0 ? ` (body starts: ${JSON.stringify(excerpt)})` : ''),
  );
}

function printable(bytes: Buffer): string {
  return bytes.toString('utf8').replace(/[^\x20-\x7e]/g, '?').slice(0, BODY_EXCERPT_BYTES);
}
