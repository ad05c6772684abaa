import net from 'node:net';
import { AgentError } from './agentError.js';
import type { SessionAttachment } from '@slipway/proto';
import { GRPC_UPGRADE, sessionUpgrade, upgradeDockerd, type DockerdUpgrade } from './dockerdUpgrade.js';

// What the agent forwards client streams to. Every kind yields a socket that carries raw bytes:
//  - buildkitd: BuildKit's gRPC API (HTTP/2) directly on the socket;
//  - dockerd:   the same API, reached through dockerd's `POST /grpc` upgrade;
//  - engine:    the Docker Engine API itself (HTTP/1.1), for clients that talk to a Docker daemon.
export const UpstreamKinds = ['buildkitd', 'dockerd', 'engine'] as const;
export type UpstreamKind = (typeof UpstreamKinds)[number];

export type UpstreamEndpoint =
  | { readonly transport: 'unix'; readonly path: string }
  | { readonly transport: 'tcp'; readonly host: string; readonly port: number };

export interface Upstream {
  readonly kind: UpstreamKind;
  /** Normalised `unix:///path` or `tcp://host:port`, for messages and logs. */
  readonly address: string;
  readonly endpoint: UpstreamEndpoint;
  readonly connectTimeoutMs: number;
  /**
   * Opens a connection ready to carry the kind's protocol. Rejects with AgentError
   * UPSTREAM_UNAVAILABLE (cannot connect, or no answer within connectTimeoutMs) or
   * UPSTREAM_PROTOCOL (dockerd refused the upgrade), or with `signal.reason` when aborted.
   * The socket comes with one placeholder `error` listener that ignores errors so that nothing
   * crashes between hand-over and adoption; the caller replaces it
   * (`socket.removeAllListeners('error')`, then its own).
   */
  dial(signal?: AbortSignal): Promise<net.Socket>;
  /**
   * Opens a connection that attaches a BuildKit session the client serves (dockerd's `/session`
   * upgrade; the upstream then speaks HTTP/2 as the client). Rejects as dial() does, and with
   * UNSUPPORTED for a buildkitd, which has no such endpoint (its sessions go on Control.Session).
   */
  dialSession(session: SessionAttachment, signal?: AbortSignal): Promise<net.Socket>;
}

export interface UpstreamOptions {
  /** Covers the whole dial: connect and, for dockerd, the upgrade answer. */
  connectTimeoutMs?: number;
}

export const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;
// sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_UNIX_SOCKET_PATH_BYTES = 107;

const EXAMPLES =
  'buildkitd:unix:///run/buildkit/buildkitd.sock, buildkitd:tcp://host:1234, dockerd:unix:///var/run/docker.sock or engine:unix:///var/run/docker.sock';

/** Parses `KIND:ADDRESS`. Throws AgentError CONFIG_INVALID saying what was expected and what arrived. */
export function parseUpstream(spec: string, options: UpstreamOptions = {}): Upstream {
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS;
  if (!Number.isSafeInteger(connectTimeoutMs) || connectTimeoutMs <= 0) {
    throw invalid(`upstream connect timeout must be a positive integer of milliseconds, got ${String(connectTimeoutMs)}`);
  }
  const colon = spec.indexOf(':');
  if (colon < 0) {
    throw invalid(`upstream must be KIND:ADDRESS with KIND one of ${UpstreamKinds.join(', ')} (e.g. ${EXAMPLES}); got ${JSON.stringify(spec)}`);
  }
  const kindText = spec.slice(0, colon);
  if (!isUpstreamKind(kindText)) {
    throw invalid(`upstream kind must be one of ${UpstreamKinds.join(', ')}; got ${JSON.stringify(kindText)} in ${JSON.stringify(spec)}`);
  }
  const endpoint = parseEndpoint(spec.slice(colon + 1), spec);
  const address = formatEndpoint(endpoint);
  const kind = kindText;
  return {
    kind,
    address,
    endpoint,
    connectTimeoutMs,
    dial: (signal?: AbortSignal) => dial(kind, endpoint, address, kind === 'dockerd' ? GRPC_UPGRADE : undefined, connectTimeoutMs, signal),
    dialSession: (session: SessionAttachment, signal?: AbortSignal) => {
      if (kind === 'buildkitd') {
        return Promise.reject(
          new AgentError('UNSUPPORTED', `this builder's upstream is a buildkitd (${address}), which has no /session endpoint; a session goes on Control.Session there`),
        );
      }
      // An engine upstream is a Docker Engine too: its /session is the same.
      return dial(kind, endpoint, address, sessionUpgrade(session), connectTimeoutMs, signal);
    },
  };
}

export function isUpstreamKind(value: string): value is UpstreamKind {
  return (UpstreamKinds as readonly string[]).includes(value);
}

function parseEndpoint(text: string, spec: string): UpstreamEndpoint {
  const expected = `expected unix:///absolute/path.sock or tcp://host:port after the kind`;
  if (text.startsWith('unix://')) {
    const path = text.slice('unix://'.length);
    if (!path.startsWith('/')) {
      throw invalid(`${expected}; got ${JSON.stringify(text)} in ${JSON.stringify(spec)} (a unix socket path must be absolute: unix:///path has three slashes)`);
    }
    if (path.includes('\0')) throw invalid(`${expected}; got a unix socket path containing a NUL byte in ${JSON.stringify(spec)}`);
    const bytes = Buffer.byteLength(path);
    if (bytes > MAX_UNIX_SOCKET_PATH_BYTES) {
      throw invalid(`unix socket path may be at most ${MAX_UNIX_SOCKET_PATH_BYTES} bytes; got ${bytes} bytes in ${JSON.stringify(spec)}`);
    }
    return { transport: 'unix', path };
  }
  if (text.startsWith('tcp://')) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw invalid(`${expected}; got ${JSON.stringify(text)} in ${JSON.stringify(spec)}, which is not a valid URL`);
    }
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const extra = url.username !== '' || url.password !== '' || (url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '';
    if (host === '' || url.port === '' || extra) {
      throw invalid(`${expected}; got ${JSON.stringify(text)} in ${JSON.stringify(spec)} (a tcp address needs a host and a port, and nothing else)`);
    }
    const port = Number(url.port);
    if (port === 0) throw invalid(`tcp port must be 1-65535; got 0 in ${JSON.stringify(spec)}`);
    return { transport: 'tcp', host, port };
  }
  throw invalid(`${expected}; got ${JSON.stringify(text)} in ${JSON.stringify(spec)}`);
}

function formatEndpoint(endpoint: UpstreamEndpoint): string {
  if (endpoint.transport === 'unix') return `unix://${endpoint.path}`;
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  return `tcp://${host}:${endpoint.port}`;
}

function invalid(message: string): AgentError {
  return new AgentError('CONFIG_INVALID', message);
}

function ignoreUntilAdopted(): void {
  // Placeholder: the caller installs its own listener when it takes the socket.
}

async function dial(
  kind: UpstreamKind,
  endpoint: UpstreamEndpoint,
  address: string,
  upgrade: DockerdUpgrade | undefined,
  connectTimeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<net.Socket> {
  if (signal?.aborted) throw signal.reason;
  // One signal for both phases: the caller's abort or our deadline, whichever comes first.
  const phase = new AbortController();
  const onCallerAbort = (): void => phase.abort(signal?.reason);
  signal?.addEventListener('abort', onCallerAbort, { once: true });
  const deadline = setTimeout(() => {
    phase.abort(new AgentError('UPSTREAM_UNAVAILABLE', `${kind} at ${address} did not accept a connection${upgrade ? ` and answer the ${upgrade.path} upgrade` : ''} within ${connectTimeoutMs} ms`));
  }, connectTimeoutMs);
  try {
    const socket = await connect(endpoint, address, kind, phase.signal);
    if (upgrade) await upgradeDockerd(socket, address, upgrade, phase.signal);
    return socket;
  } finally {
    clearTimeout(deadline);
    signal?.removeEventListener('abort', onCallerAbort);
  }
}

function connect(endpoint: UpstreamEndpoint, address: string, kind: UpstreamKind, signal: AbortSignal): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket =
      endpoint.transport === 'unix'
        ? net.connect({ path: endpoint.path, allowHalfOpen: true })
        : net.connect({ host: endpoint.host, port: endpoint.port, noDelay: true, allowHalfOpen: true });
    socket.on('error', ignoreUntilAdopted);

    const settle = (err: unknown): void => {
      socket.off('connect', onConnect);
      socket.off('error', onError);
      signal.removeEventListener('abort', onAbort);
      if (err !== undefined) {
        socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    };
    const onConnect = (): void => settle(undefined);
    const onError = (err: Error): void => {
      settle(new AgentError('UPSTREAM_UNAVAILABLE', `cannot connect to ${kind} at ${address}: ${err.message}`, { cause: err }));
    };
    const onAbort = (): void => settle(signal.reason);

    socket.once('connect', onConnect);
    socket.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
  });
}

/** A stream that ended both ways still writes what is queued toward its upstream, for this long at most. */
export const UPSTREAM_FLUSH_LIMIT_MS = 60_000;
