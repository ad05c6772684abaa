import http2, { type ClientHttp2Session } from 'node:http2';
import type tls from 'node:tls';
import { readBoundedBody, readHttpResponseHead, type HttpResponseHead } from '@slipway/proto';
import { CliError, type CliErrorCode } from './cliError.js';
import { cliCodeOf } from './tunnelStream.js';
import { leaveIfDraining } from './drainingReplica.js';

const MAX_RESPONSE_BYTES = 1024 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;

export interface ApiCall {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  /** Sent as a bearer token; absent for calls that authenticate otherwise (the OIDC exchange). */
  token: string | undefined;
  body?: unknown;
  timeoutMs: number;
  /**
   * CLI codes for the gateway's error codes where this call means something more precise than
   * the tunnel's reading (for the admin API a NOT_FOUND is a missing project, not a refused tunnel).
   */
  codes?: Readonly<Partial<Record<string, CliErrorCode>>>;
}

// Where API calls travel: the tunnel client's HTTP/2 session when there is one, else a fresh
// HTTP/1.1 connection (a path that only carries HTTP/1.1 carries WebSocket tunnels too).
export interface ApiCarrier {
  carrier(): Promise<ClientHttp2Session | (() => Promise<tls.TLSSocket>)>;
}

function apiError(status: number, text: string, what: string, codes: ApiCall['codes']): CliError {
  let wire: string | undefined;
  let message = text.slice(0, 500);
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
    wire = parsed.error?.code;
    message = parsed.error?.message ?? message;
  } catch {
    // Not ours: a proxy or load balancer answered. Say what arrived.
  }
  const code: CliErrorCode =
    (wire !== undefined ? codes?.[wire] : undefined) ??
    (wire === 'RATE_LIMITED' ? 'RATE_LIMITED' : status === 404 && wire === undefined ? 'TUNNEL_REFUSED' : cliCodeOf(wire, false));
  return new CliError(code, `${what}: the gateway answered HTTP ${status}${wire ? ` ${wire}` : ''}: ${message}`, { cause: new GatewayAnswer(status, wire, message) });
}

/** What the gateway said, kept as the cause of a CliError for callers that reword it. */
export class GatewayAnswer extends Error {
  override readonly name = 'GatewayAnswer';

  constructor(
    readonly status: number,
    readonly wireCode: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** The gateway's own answer behind an error from callGatewayApi, if that is what it was. */
export function gatewayAnswerOf(err: unknown): GatewayAnswer | undefined {
  const cause = err instanceof Error ? err.cause : undefined;
  return cause instanceof GatewayAnswer ? cause : undefined;
}

/** One JSON call to the gateway's API; resolves with the parsed body of a 2xx answer (undefined when it has none, as 204 does). */
export async function callGatewayApi<T>(carrier: ApiCarrier, call: ApiCall): Promise<T> {
  const what = `${call.method} ${call.path}`;
  const payload = call.body === undefined ? undefined : Buffer.from(JSON.stringify(call.body));
  const via = await carrier.carrier();
  const { status, text } = typeof via === 'function' ? await overHttp1(await via(), call, payload) : await overHttp2(via, call, payload);
  if (status < 200 || status > 299) throw apiError(status, text, what, call.codes);
  if (text === '') return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CliError('TUNNEL_REFUSED', `${what}: expected JSON from the gateway, got '${text.slice(0, 120)}'`);
  }
}

function overHttp2(session: ClientHttp2Session, call: ApiCall, payload: Buffer | undefined): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: http2.OutgoingHttpHeaders = { ':method': call.method, ':path': call.path, accept: 'application/json' };
    if (call.token !== undefined) headers['authorization'] = `Bearer ${call.token}`;
    if (payload) headers['content-type'] = 'application/json';
    const req = session.request(headers, { endStream: payload === undefined });
    const chunks: Buffer[] = [];
    let size = 0;
    let status = 0;
    const timer = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      reject(new CliError('GATEWAY_UNREACHABLE', `${call.method} ${call.path}: no answer from the gateway within ${call.timeoutMs} ms`));
    }, call.timeoutMs);
    req.on('response', (h) => {
      leaveIfDraining(session, h);
      status = Number(h[':status']);
    });
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_RESPONSE_BYTES) {
        clearTimeout(timer);
        req.close(http2.constants.NGHTTP2_CANCEL);
        reject(new CliError('TUNNEL_REFUSED', `${call.method} ${call.path}: answer larger than ${MAX_RESPONSE_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      clearTimeout(timer);
      resolve({ status, text: Buffer.concat(chunks).toString('utf8') });
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(new CliError('GATEWAY_UNREACHABLE', `${call.method} ${call.path} failed: ${err.message}`, { cause: err }));
    });
    if (payload) req.end(payload);
  });
}

async function overHttp1(socket: tls.TLSSocket, call: ApiCall, payload: Buffer | undefined): Promise<{ status: number; text: string }> {
  socket.on('error', () => {});
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), call.timeoutMs);
  try {
    const host = socket.servername || 'gateway';
    socket.write(
      `${call.method} ${call.path} HTTP/1.1\r\nHost: ${host}\r\n` +
        (call.token !== undefined ? `Authorization: Bearer ${call.token}\r\n` : '') +
        'Accept: application/json\r\n' +
        (payload ? `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n` : 'Content-Length: 0\r\n') +
        'Connection: close\r\n\r\n',
    );
    if (payload) socket.write(payload);
    let head: HttpResponseHead;
    try {
      head = await readHttpResponseHead(socket, MAX_HEAD_BYTES, abort.signal);
    } catch (err) {
      throw new CliError('GATEWAY_UNREACHABLE', `${call.method} ${call.path}: ${(err as Error).message}`, { cause: err });
    }
    const text = await readBoundedBody(socket, head, MAX_RESPONSE_BYTES, call.timeoutMs);
    return { status: head.statusCode, text };
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}
