import { BenchError } from './benchError.js';
import { connectEndpoint, describeEndpoint, type BenchEndpoint } from './benchEndpoint.js';
import { COUNT_BYTES, Mode, decodeCount, downloadRequest } from './upstreamProtocol.js';

export interface TransferResult {
  direction: 'upload' | 'download';
  /** Bytes the client asked to move. */
  bytes: number;
  /** Upload: the count the upstream reported back. Download: the bytes the client received. */
  bytesVerified: number;
  seconds: number;
  /** 1 MB = 10^6 bytes. */
  mbPerSec: number;
}

// Payload for uploads, written again and again; see upstreamServer.ts for why it is not zeros.
const CHUNK = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i * 2246822519) >>> 24));
const UPLOAD_MODE = Buffer.from([Mode.upload]);

// One connection moving `bytes` in one direction. The clock runs from the start of the connect
// until the upload's byte count comes back (upload) or the last byte arrives (download); the
// connection then closes cleanly before the promise settles, so one transfer's teardown never
// overlaps the next measurement.
export function measureTransfer(endpoint: BenchEndpoint, direction: 'upload' | 'download', bytes: number, timeoutMs: number): Promise<TransferResult> {
  const where = describeEndpoint(endpoint);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connectEndpoint(endpoint);
    let elapsedMs: number | undefined;
    let received = 0;
    let reply = Buffer.alloc(0);
    let failure: BenchError | undefined;
    const fail = (error: BenchError): void => {
      failure ??= error;
      socket.destroy();
    };
    const timer = setTimeout(
      () => fail(new BenchError('TIMEOUT', `${direction} of ${bytes} bytes via ${where} did not finish within ${timeoutMs} ms (${received} bytes back so far)`)),
      timeoutMs,
    );
    socket.on('error', (err) => fail(new BenchError('MEASUREMENT_FAILED', `${direction} via ${where} failed: ${err.message}`, { cause: err })));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (direction === 'upload') {
        reply = Buffer.concat([reply, chunk]);
        if (reply.length > COUNT_BYTES) fail(new BenchError('PROTOCOL', `upload via ${where}: expected an ${COUNT_BYTES}-byte count back, got ${reply.length} bytes`));
      }
    });
    socket.on('end', () => {
      elapsedMs = performance.now() - started;
      if (direction === 'download') {
        if (received !== bytes) fail(new BenchError('PROTOCOL', `download via ${where}: asked for ${bytes} bytes, received ${received}`));
        return;
      }
      if (reply.length !== COUNT_BYTES) {
        fail(new BenchError('PROTOCOL', `upload via ${where}: expected an ${COUNT_BYTES}-byte count back, got ${reply.length} bytes`));
        return;
      }
      const counted = decodeCount(reply);
      if (counted !== bytes) fail(new BenchError('PROTOCOL', `upload via ${where}: sent ${bytes} bytes, the upstream counted ${counted}`));
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (failure) return reject(failure);
      if (elapsedMs === undefined) return reject(new BenchError('MEASUREMENT_FAILED', `${direction} via ${where}: connection closed before the transfer completed`));
      const verified = direction === 'upload' ? decodeCount(reply) : received;
      resolve({ direction, bytes, bytesVerified: verified, seconds: elapsedMs / 1000, mbPerSec: bytes / 1e6 / (elapsedMs / 1000) });
    });

    if (direction === 'download') {
      // Not half-closed here: the request stays open the way a build's connection does.
      socket.write(downloadRequest(bytes));
      return;
    }
    socket.write(UPLOAD_MODE);
    let left = bytes;
    const writeSome = (): void => {
      while (left > 0) {
        if (socket.destroyed) return;
        const n = Math.min(left, CHUNK.length);
        left -= n;
        if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          socket.once('drain', writeSome);
          return;
        }
      }
      socket.end();
    };
    writeSome();
  });
}
