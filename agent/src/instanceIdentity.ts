import http from 'node:http';
import { Header } from '@slipway/proto';
import { AgentError } from './agentError.js';

// The EC2 instance identity an agent presents when it joins: the document the instance metadata
// service (IMDS) serves and AWS's signature of it. The join token says which fleet the agent may
// join; the signed document proves which instance it runs on, so a leaked token cannot be used to
// register as a builder the fleet never launched. Fetched through IMDSv2 only: IMDSv1 answers any
// process that can be tricked into a GET (SSRF), and instances are usually launched IMDSv2-only.

export const IMDS_DEFAULT_URL = 'http://169.254.169.254';

export interface InstanceIdentity {
  /** The document exactly as IMDS served it: the signature covers these bytes, so they are never re-encoded. */
  document: Buffer;
  /** AWS's base64 RSA-SHA256 signature of the document, line breaks removed so that it fits in a header. */
  signature: string;
  instanceId: string;
  accountId: string;
  region: string;
  /** `x86_64` or `arm64` on the instances Slipway builds on. */
  architecture: string;
}

export interface InstanceIdentityFetchOptions {
  /** IMDS base URL: http://169.254.169.254 on EC2, a fake server in tests. */
  baseUrl: URL;
  /** Limit for the whole exchange (token, document, signature). */
  timeoutMs: number;
  /** Life of the IMDSv2 session token. Only these three requests use it, so it need not be long. Default 60. */
  tokenTtlSec?: number;
  signal?: AbortSignal;
}

// IMDS answers are small (a token is about 60 bytes, a document about 500, a signature under 400);
// anything far larger is not IMDS, and is not read into memory.
const MAX_TOKEN_BYTES = 1024;
export const MAX_INSTANCE_DOCUMENT_BYTES = 4096;
const MAX_SIGNATURE_BYTES = 2048;
const DEFAULT_TOKEN_TTL_SEC = 60;
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
const ACCOUNT_ID = /^\d{12}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// A session token travels back to IMDS in a header; anything outside visible ASCII could split it.
const IMDS_TOKEN = /^[\x21-\x7e]+$/;

/** Fetches and checks the instance identity document and its signature from IMDSv2. */
export async function fetchInstanceIdentity(options: InstanceIdentityFetchOptions): Promise<InstanceIdentity> {
  const where = options.baseUrl.origin;
  const ttlSec = options.tokenTtlSec ?? DEFAULT_TOKEN_TTL_SEC;
  if (!Number.isInteger(ttlSec) || ttlSec < 1 || ttlSec > 21_600) {
    throw new AgentError('CONFIG_INVALID', `IMDS token TTL must be an integer from 1 to 21600 seconds; got ${ttlSec}`);
  }
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), options.timeoutMs);
  const onAbort = (): void => deadline.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const imds = new ImdsSession(options.baseUrl, options.timeoutMs, deadline.signal, () => options.signal?.aborted === true);
  try {
    const token = await imds.openSession(ttlSec);
    const document = await imds.get('/latest/dynamic/instance-identity/document', token, MAX_INSTANCE_DOCUMENT_BYTES, 'instance identity document');
    const rawSignature = await imds.get('/latest/dynamic/instance-identity/signature', token, MAX_SIGNATURE_BYTES, 'instance identity signature');
    const facts = readDocument(document, where);
    // IMDS breaks the base64 into lines; a header value cannot hold line breaks.
    const signature = rawSignature.toString('latin1').replace(/\s+/g, '');
    if (signature === '' || signature.length % 4 !== 0 || !BASE64.test(signature)) {
      throw new AgentError('UNAUTHENTICATED', `IMDS at ${where} served an instance identity signature that is not base64 (${rawSignature.length} bytes)`);
    }
    return { document, signature, ...facts };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

/** The connect request headers that carry an instance identity to the gateway. */
export function instanceIdentityHeaders(identity: Pick<InstanceIdentity, 'document' | 'signature'>): Record<string, string> {
  // Header values go into a hand-written request head: only base64 may pass.
  if (!BASE64.test(identity.signature)) {
    throw new AgentError('INTERNAL', `instance identity signature is not base64 (${identity.signature.length} characters); it cannot be sent as a header`);
  }
  return {
    [Header.instanceDocument]: identity.document.toString('base64'),
    [Header.instanceSignature]: identity.signature,
  };
}

function readDocument(document: Buffer, where: string): Omit<InstanceIdentity, 'document' | 'signature'> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(document.toString('utf8'));
  } catch {
    throw new AgentError('UNAUTHENTICATED', `IMDS at ${where} served an instance identity document that is not JSON (${document.length} bytes)`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new AgentError('UNAUTHENTICATED', `IMDS at ${where} served an instance identity document that is not a JSON object`);
  }
  const fields = parsed as Record<string, unknown>;
  const problems: string[] = [];
  const read = (name: string, pattern: RegExp, expected: string): string => {
    const value = fields[name];
    if (typeof value === 'string' && pattern.test(value)) return value;
    problems.push(`${name} is ${value === undefined ? 'missing' : `'${String(value).slice(0, 64)}'`}, expected ${expected}`);
    return '';
  };
  const facts = {
    instanceId: read('instanceId', INSTANCE_ID, 'an instance id such as i-0123456789abcdef0'),
    accountId: read('accountId', ACCOUNT_ID, 'a 12-digit AWS account id'),
    region: read('region', REGION, 'a region such as us-east-1'),
    architecture: read('architecture', /^[a-z0-9_]{1,32}$/, 'an architecture such as x86_64 or arm64'),
  };
  if (problems.length > 0) {
    throw new AgentError('UNAUTHENTICATED', `IMDS at ${where} served an instance identity document the gateway cannot use: ${problems.join('; ')}`);
  }
  return facts;
}

// One IMDSv2 exchange: a PUT for a session token, then GETs that carry it.
class ImdsSession {
  private readonly where: string;

  constructor(
    private readonly baseUrl: URL,
    private readonly timeoutMs: number,
    private readonly signal: AbortSignal,
    private readonly cancelled: () => boolean,
  ) {
    this.where = baseUrl.origin;
  }

  async openSession(ttlSec: number): Promise<string> {
    const { status, body } = await this.request('PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttlSec) }, MAX_TOKEN_BYTES, 'session token');
    if (status !== 200) {
      const hint = status === 403 ? ': the instance metadata service is turned off for this instance' : '';
      throw new AgentError('UNAUTHENTICATED', `IMDS at ${this.where} answered ${status} to PUT /latest/api/token; expected 200 with a session token${hint}`);
    }
    const token = body.toString('latin1').trim();
    if (!IMDS_TOKEN.test(token)) {
      throw new AgentError('UNAUTHENTICATED', `IMDS at ${this.where} answered PUT /latest/api/token with ${body.length} bytes that are not a session token`);
    }
    return token;
  }

  async get(path: string, token: string, maxBytes: number, what: string): Promise<Buffer> {
    const { status, body } = await this.request('GET', path, { 'x-aws-ec2-metadata-token': token }, maxBytes, what);
    if (status === 200) return body;
    const hint =
      status === 401 ? ': it did not accept the session token it had just issued' : status === 404 ? ': this is not an EC2 instance, or IMDS has no identity for it' : '';
    throw new AgentError('UNAUTHENTICATED', `IMDS at ${this.where} answered ${status} to GET ${path}; expected 200 with the ${what}${hint}`);
  }

  private request(method: 'PUT' | 'GET', path: string, headers: Record<string, string>, maxBytes: number, what: string): Promise<{ status: number; body: Buffer }> {
    const failed = (reason: string, cause?: unknown): AgentError =>
      new AgentError('UNAUTHENTICATED', `cannot read the ${what} from IMDS at ${this.where} (${method} ${path}): ${reason}`, cause === undefined ? undefined : { cause });
    return new Promise((resolve, reject) => {
      if (this.signal.aborted) {
        reject(this.stopped(failed));
        return;
      }
      // No agent: IMDS is link-local and asked three times, a kept-alive socket would only outlive us.
      // node:http ignores HTTP(S)_PROXY, which matters: IMDS must never be asked through a proxy.
      const req = http.request(new URL(path, this.baseUrl), { method, headers: { ...headers, 'content-length': '0' }, agent: false, signal: this.signal });
      req.on('error', (err) => reject(this.signal.aborted ? this.stopped(failed) : failed(err.message, err)));
      req.on('response', (res) => {
        res.on('error', (err) => reject(this.signal.aborted ? this.stopped(failed) : failed(err.message, err)));
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > maxBytes) {
          res.destroy();
          reject(failed(`the answer is ${declared} bytes, more than the ${maxBytes}-byte limit`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            res.destroy();
            reject(failed(`the answer is more than the ${maxBytes}-byte limit`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      });
      req.end();
    });
  }

  private stopped(failed: (reason: string) => AgentError): AgentError {
    if (this.cancelled()) return failed('cancelled');
    // On EC2 the usual cause is IMDSv2's response hop limit: with the default of 1, the token
    // answer never reaches a process inside a container on a bridge network.
    return failed(`no answer within ${this.timeoutMs} ms (from a container, the instance's metadata hop limit must be at least 2)`);
  }
}
