import type { Duplex } from 'node:stream';

export interface HttpResponseHead {
  statusCode: number;
  statusLine: string;
  headers: Map<string, string>;
}

export class HttpHeadError extends Error {
  override readonly name = 'HttpHeadError';
}

// The response head at the start of `bytes` and what follows it, or undefined while the head is
// incomplete. Throws HttpHeadError on a head that is not HTTP/1.x or is longer than maxBytes.
export function parseHttpResponseHead(bytes: Buffer, maxBytes: number): { head: HttpResponseHead; rest: Buffer } | undefined {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) {
    if (bytes.length > maxBytes) throw new HttpHeadError(`peer sent more than ${maxBytes} bytes without ending the HTTP response head`);
    return undefined;
  }
  const lines = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const statusLine = lines[0] ?? '';
  const match = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine);
  if (!match) throw new HttpHeadError(`expected an HTTP/1.1 status line; got ${JSON.stringify(statusLine.slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { head: { statusCode: Number(match[1]), statusLine, headers }, rest: bytes.subarray(end + 4) };
}

// Reads one HTTP/1.1 response head from a socket that is about to change protocols (an Upgrade,
// a CONNECT). Bytes after the head belong to whatever comes next, so they are unshifted back.
// The head is bounded: a peer that never ends it cannot make us buffer without limit.
export function readHttpResponseHead(socket: Duplex, maxBytes: number, signal?: AbortSignal): Promise<HttpResponseHead> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    let settled = false;
    // 'readable' and read() rather than 'data': once the listener is gone the socket is back in
    // its initial state, so whoever takes it next starts it by listening, as with a fresh socket.
    const cleanup = (): void => {
      settled = true;
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      cleanup();
      reject(err);
    };
    const onError = (err: Error): void => fail(err);
    const onEnd = (): void =>
      fail(new HttpHeadError(`peer closed the connection after ${buffered.length} bytes, before a complete HTTP response head`));
    const onAbort = (): void => fail(signal?.reason instanceof Error ? signal.reason : new HttpHeadError('aborted'));
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        let parsed: { head: HttpResponseHead; rest: Buffer } | undefined;
        try {
          parsed = parseHttpResponseHead(buffered, maxBytes);
        } catch (err) {
          fail(err as Error);
          return;
        }
        if (parsed === undefined) continue;
        cleanup();
        if (parsed.rest.length > 0) socket.unshift(parsed.rest);
        resolve(parsed.head);
      }
    };
    if (signal?.aborted) {
      onAbort();
      return;
    }
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.on('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// Reads up to maxBytes of a response body that follows a head (for error details), or whatever
// arrives before the peer closes.
export function readBoundedBody(socket: Duplex, head: HttpResponseHead, maxBytes: number, timeoutMs: number): Promise<string> {
  const declared = Number(head.headers.get('content-length') ?? NaN);
  const want = Number.isFinite(declared) ? Math.min(declared, maxBytes) : maxBytes;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', done);
      socket.off('close', done);
      resolve(Buffer.concat(chunks).subarray(0, want).toString('utf8'));
    };
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= want) done();
    };
    const timer = setTimeout(done, timeoutMs);
    if (want === 0) {
      done();
      return;
    }
    socket.on('data', onData);
    socket.once('end', done);
    socket.once('close', done);
    socket.resume();
  });
}
