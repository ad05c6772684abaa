import net from 'node:net';
import { CliError } from './cliError.js';
import { proxyFor, proxyLabel, type ProxyEnv, type ProxySettings } from './proxySettings.js';

// Opens the byte stream to the gateway: a plain TCP socket, or one tunnelled through an HTTP
// CONNECT proxy. The caller starts TLS on it (`tls.connect({ socket, servername, ALPNProtocols })`),
// so HTTP/2 and the WebSocket fallback share one proxy implementation.
//
// http2-wrapper's proxy classes were considered: they are Agents that yield HTTP/2 sessions, so
// they cannot serve the WebSocket path, and they have no deadline or AbortSignal for the CONNECT
// exchange. A CONNECT request is small enough to own.

// A CONNECT answer is a status line and a few headers; anything bigger is not a proxy we can use.
export const MAX_PROXY_RESPONSE_HEAD_BYTES = 16 * 1024;

export interface DialThroughProxyOptions {
  readonly proxy: ProxySettings;
  // Gateway host name or IP literal (brackets optional for IPv6); the proxy resolves names.
  readonly host: string;
  readonly port: number;
  readonly signal?: AbortSignal;
  // Covers the whole dial: TCP connect to the proxy plus its answer to CONNECT.
  readonly timeoutMs: number;
}

export interface DialGatewayOptions {
  readonly env: ProxyEnv;
  readonly host: string;
  readonly port: number;
  readonly signal?: AbortSignal;
  readonly timeoutMs: number;
}

// Resolves with a connected socket whose next bytes are the gateway's. No error listener of ours
// remains on it: attach yours (or wrap it in TLS) in the same tick as the promise resolves.
// Rejects with CliError PROXY_FAILED / PROXY_AUTH naming the proxy, or with signal.reason on abort.
export async function dialThroughProxy(options: DialThroughProxyOptions): Promise<net.Socket> {
  const { proxy, port, signal, timeoutMs } = options;
  const label = proxyLabel(proxy);
  const authority = authorityOf(options.host, port);
  let phase: 'connect' | 'answer' = 'connect';
  const timeoutError = (): CliError =>
    new CliError(
      'PROXY_FAILED',
      phase === 'connect'
        ? `proxy ${label} did not accept a TCP connection within ${timeoutMs} ms`
        : `proxy ${label} did not answer CONNECT ${authority} within ${timeoutMs} ms`,
    );

  return dialSocket(bareHost(proxy.url.hostname), proxyPort(proxy), signal, timeoutMs, timeoutError, (socket, on, settle) => {
    const received: Buffer[] = [];
    let receivedBytes = 0;

    on('connect', () => {
      phase = 'answer';
      const auth = proxy.authorization === undefined ? '' : `Proxy-Authorization: ${proxy.authorization}\r\n`;
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`, 'latin1');
    });

    on('readable', () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        received.push(chunk);
        receivedBytes += chunk.length;
        const buffered = Buffer.concat(received);
        // latin1 maps bytes 1:1 to UTF-16 units, so string indexes are byte offsets.
        const headEnd = /\r?\n\r?\n/.exec(buffered.toString('latin1'));
        if (headEnd === null || headEnd.index > MAX_PROXY_RESPONSE_HEAD_BYTES) {
          if (receivedBytes > MAX_PROXY_RESPONSE_HEAD_BYTES) {
            settle(
              new CliError(
                'PROXY_FAILED',
                `proxy ${label} answered CONNECT with a response head over ${MAX_PROXY_RESPONSE_HEAD_BYTES} bytes`,
              ),
            );
            return;
          }
          continue;
        }
        const head = buffered.subarray(0, headEnd.index).toString('latin1');
        const failure = checkAnswer(head, label, authority, proxy.authorization !== undefined);
        if (failure !== undefined) {
          settle(failure);
          return;
        }
        // A 2xx CONNECT answer has no body: whatever followed the head came from the gateway.
        const rest = buffered.subarray(headEnd.index + headEnd[0].length);
        settle();
        if (rest.length > 0) socket.unshift(rest);
        return;
      }
    });

    const closedEarly = (): void =>
      settle(
        new CliError(
          'PROXY_FAILED',
          phase === 'connect'
            ? `proxy ${label} closed the connection before it was established`
            : `proxy ${label} closed the connection before answering CONNECT ${authority}`,
        ),
      );
    on('end', closedEarly);
    on('close', closedEarly);

    on('error', (err: Error) =>
      settle(
        new CliError(
          'PROXY_FAILED',
          phase === 'connect'
            ? `could not connect to proxy ${label}: ${err.message}`
            : `connection to proxy ${label} failed while waiting for its answer to CONNECT ${authority}: ${err.message}`,
          { cause: err },
        ),
      ),
    );
  });
}

// Direct, or through the proxy that `env` names for https://host:port (honouring NO_PROXY).
// Rejects with CONFIG_INVALID for unusable proxy settings, GATEWAY_UNREACHABLE when a direct
// connection fails, and as dialThroughProxy otherwise.
export async function dialGateway(options: DialGatewayOptions): Promise<net.Socket> {
  const { env, host, port, signal, timeoutMs } = options;
  const authority = authorityOf(host, port);
  const proxy = proxyFor(env, new URL(`https://${authority}`));
  if (proxy !== undefined) {
    return dialThroughProxy({ proxy, host, port, timeoutMs, ...(signal ? { signal } : {}) });
  }
  return dialSocket(
    bareHost(host),
    port,
    signal,
    timeoutMs,
    () => new CliError('GATEWAY_UNREACHABLE', `gateway ${authority} did not accept a TCP connection within ${timeoutMs} ms`),
    (_socket, on, settle) => {
      on('connect', () => settle());
      on('error', (err: Error) =>
        settle(new CliError('GATEWAY_UNREACHABLE', `could not connect to gateway ${authority}: ${err.message}`, { cause: err })),
      );
    },
  );
}

interface Listen {
  (event: 'connect' | 'readable' | 'end' | 'close', listener: () => void): void;
  (event: 'error', listener: (err: Error) => void): void;
}
type Settle = (err?: unknown) => void;

// Connects and lets `drive` decide when the socket is ready. Settles exactly once: on drive's
// verdict, the deadline, or abort. Every listener added through `on` is removed on settling, the
// timer is cleared, and on failure the socket is destroyed.
function dialSocket(
  host: string,
  port: number,
  signal: AbortSignal | undefined,
  timeoutMs: number,
  timeoutError: () => CliError,
  drive: (socket: net.Socket, on: Listen, settle: Settle) => void,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      reject(new CliError('INTERNAL', `expected a positive dial timeout, got ${timeoutMs} ms`));
      return;
    }
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const socket = net.connect({ host, port });
    const removers: Array<() => void> = [];
    const on: Listen = (event: string, listener: (err: Error) => void) => {
      socket.on(event, listener);
      removers.push(() => socket.off(event, listener));
    };
    let settled = false;
    const onAbort = (): void => settle(signal?.reason);
    const timer = setTimeout(() => settle(timeoutError()), timeoutMs);
    const settle: Settle = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      for (const remove of removers) remove();
      if (err === undefined) {
        resolve(socket);
        return;
      }
      // The failure is already reported; a late error from the dying socket has nobody to tell.
      socket.on('error', () => {});
      socket.destroy();
      reject(err);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    drive(socket, on, settle);
  });
}

// Returns the error for a non-2xx answer, undefined for success.
function checkAnswer(head: string, label: string, authority: string, sentCredentials: boolean): CliError | undefined {
  const lines = head.split(/\r?\n/);
  const statusLine = printable(lines[0] ?? '');
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  if (status === null) {
    return new CliError('PROXY_FAILED', `proxy ${label} answered CONNECT with "${statusLine}", expected an HTTP/1.x status line`);
  }
  const code = Number(status[1]);
  if (code >= 200 && code < 300) return undefined;
  if (code === 407) {
    const schemes = lines
      .slice(1)
      .filter((line) => /^proxy-authenticate\s*:/i.test(line))
      .map((line) => printable(line.slice(line.indexOf(':') + 1).trim().split(/\s/)[0] ?? ''))
      .filter((scheme) => scheme !== '');
    const offered = schemes.length > 0 && !schemes.some((s) => s.toLowerCase() === 'basic')
      ? ` (it offers ${schemes.join(', ')}; only Basic is supported)`
      : '';
    return new CliError(
      'PROXY_AUTH',
      sentCredentials
        ? `proxy ${label} rejected the credentials from the proxy URL${offered}`
        : `proxy ${label} requires credentials and none were given${offered}; put them in the proxy URL as http://user:password@${label}`,
    );
  }
  return new CliError('PROXY_FAILED', `proxy ${label} refused CONNECT ${authority}: "${statusLine}"`);
}

function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 200 ? `${clean.slice(0, 200)}...` : clean;
}

function authorityOf(host: string, port: number): string {
  const bare = bareHost(host);
  if (!/^[A-Za-z0-9._~%:-]+$/.test(bare)) {
    throw new CliError('CONFIG_INVALID', `expected a gateway host name or IP address, got "${printable(host)}"`);
  }
  if (!(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new CliError('CONFIG_INVALID', `expected a gateway port from 1 to 65535, got ${port}`);
  }
  return net.isIPv6(bare) ? `[${bare}]:${port}` : `${bare}:${port}`;
}

function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function proxyPort(proxy: ProxySettings): number {
  return proxy.url.port === '' ? 80 : Number(proxy.url.port);
}
