import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { CliError } from '../cliError.js';
import { dialThroughProxy } from '../connectTunnel.js';
import { proxyFor, type ProxyEnv } from '../proxySettings.js';
import { apiHostOf } from './imageReference.js';
import type { Credential, RegistryCredentials } from './registryCredentials.js';

// The OCI distribution API (what `docker push` speaks), over Node's http/https, with the user's
// credentials: anonymous first; on a 401, Basic or the bearer-token flow its WWW-Authenticate
// challenge names (a token from the realm, asked with the user's password or identity token, for
// the repository scope each request needs). Registries on loopback get plain HTTP, as Docker and
// BuildKit treat them as insecure. A proxy named by HTTPS_PROXY/HTTP_PROXY (NO_PROXY honoured, as
// for the gateway) is gone through with CONNECT, so the registry's TLS stays end to end.

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const MANIFEST_MEDIA_TYPES = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST];

// distribution refuses manifests above 4 MiB; a bigger answer is not a manifest.
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_BLOB_BYTES = 512 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const MAX_REDIRECTS = 5;
const DEFAULT_TIMEOUT_MS = 60_000;
const TOKEN_CLIENT_ID = 'slipway';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface RegistryClientOptions {
  /** Plain HTTP; by default only for loopback registries (localhost, 127.0.0.0/8, ::1). */
  insecure?: boolean;
  /** Idle time on one request's socket before it is abandoned. */
  timeoutMs?: number;
  /** Proxy variables (HTTPS_PROXY, NO_PROXY, ...); by default those the credentials were loaded with. */
  proxyEnv?: ProxyEnv;
  /** PEM CA(s) to trust for the registry's TLS, in place of Node's roots (and NODE_EXTRA_CA_CERTS). */
  ca?: string | Buffer;
}

type Action = 'pull' | 'push';

interface RequestSpec {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST';
  /** Path (with query) under the registry, or an absolute URL the registry gave (upload locations). */
  target: string;
  repository: string;
  actions: Action[];
  headers?: Record<string, string>;
  body?: Buffer;
  maxBody: number;
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  url: string;
}

interface Challenge {
  scheme: string;
  params: Map<string, string>;
}

export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:[0-9]+$/, '');
  return host === 'localhost' || host === '::1' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(host);
}

export function sha256Digest(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export class RegistryClient {
  readonly baseUrl: string;
  private readonly agent: http.Agent;
  private readonly timeoutMs: number;
  private readonly proxyEnv: ProxyEnv;
  private readonly ca: string | Buffer | undefined;
  private credential: Promise<Credential | undefined> | undefined;
  /** Set once the registry asked for Basic: every later request sends it at once. */
  private basic: string | undefined;
  private readonly tokens = new Map<string, string>();

  constructor(
    readonly registry: string,
    private readonly credentials: RegistryCredentials | undefined,
    options: RegistryClientOptions = {},
  ) {
    const insecure = options.insecure ?? isLoopbackRegistry(registry);
    this.baseUrl = `${insecure ? 'http' : 'https'}://${apiHostOf(registry)}`;
    this.ca = options.ca;
    this.agent = insecure ? new http.Agent({ keepAlive: true, maxSockets: 8 }) : new https.Agent({ keepAlive: true, maxSockets: 8, ...(options.ca !== undefined ? { ca: options.ca } : {}) });
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.proxyEnv = options.proxyEnv ?? credentials?.proxyEnv ?? {};
    // Unusable proxy settings are reported before any request, naming the variable.
    proxyFor(this.proxyEnv, this.baseUrl);
  }

  /** The manifest's descriptor, or undefined when the registry has no such manifest (404). */
  async headManifest(repository: string, reference: string, accept: readonly string[] = MANIFEST_MEDIA_TYPES): Promise<Descriptor | undefined> {
    const res = await this.request({ method: 'HEAD', target: `/v2/${repository}/manifests/${reference}`, repository, actions: ['pull'], headers: { accept: accept.join(', ') }, maxBody: 0 }, [200, 404]);
    if (res.status === 404) return undefined;
    const digest = header(res, 'docker-content-digest');
    const length = Number(header(res, 'content-length'));
    const mediaType = header(res, 'content-type');
    if (digest === undefined || !Number.isInteger(length) || mediaType === undefined) {
      throw registryError(`HEAD ${res.url}: expected Docker-Content-Digest, Content-Length and Content-Type, got ${['docker-content-digest', 'content-length', 'content-type'].map((h) => `${h}=${header(res, h) ?? '(none)'}`).join(', ')}`);
    }
    return { digest, size: length, mediaType: mediaType.split(';')[0]!.trim() };
  }

  /** The manifest's bytes as stored; its digest is checked when asked for by digest. */
  async getManifest(repository: string, reference: string, accept: readonly string[] = MANIFEST_MEDIA_TYPES): Promise<{ descriptor: Descriptor; body: Buffer }> {
    const res = await this.request({ method: 'GET', target: `/v2/${repository}/manifests/${reference}`, repository, actions: ['pull'], headers: { accept: accept.join(', ') }, maxBody: MAX_MANIFEST_BYTES }, [200]);
    const digest = sha256Digest(res.body);
    if (reference.includes(':') && reference !== digest) {
      throw registryError(`GET ${res.url}: the manifest's bytes hash to ${digest}, not to the digest asked for`);
    }
    const mediaType = (header(res, 'content-type') ?? '').split(';')[0]!.trim();
    return { descriptor: { mediaType, digest, size: res.body.length }, body: res.body };
  }

  /** Stores a manifest under a tag or its digest; the registry's digest must be the bytes' own. */
  async putManifest(repository: string, reference: string, mediaType: string, body: Buffer): Promise<Descriptor> {
    const res = await this.request({ method: 'PUT', target: `/v2/${repository}/manifests/${reference}`, repository, actions: ['pull', 'push'], headers: { 'content-type': mediaType }, body, maxBody: MAX_ERROR_BODY_BYTES }, [201]);
    const digest = sha256Digest(body);
    const answered = header(res, 'docker-content-digest');
    if (answered !== undefined && answered !== digest) {
      throw registryError(`PUT ${res.url}: the registry stored the manifest as ${answered}, but its bytes hash to ${digest}`);
    }
    return { mediaType, digest, size: body.length };
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const res = await this.request({ method: 'HEAD', target: `/v2/${repository}/blobs/${digest}`, repository, actions: ['pull'], maxBody: 0 }, [200, 404]);
    return res.status === 200;
  }

  /** Uploads a blob in one piece (POST for a location, then PUT with its digest) unless it is there. */
  async pushBlob(repository: string, data: Buffer): Promise<{ digest: string; size: number }> {
    const digest = sha256Digest(data);
    if (await this.hasBlob(repository, digest)) return { digest, size: data.length };
    const started = await this.request({ method: 'POST', target: `/v2/${repository}/blobs/uploads/`, repository, actions: ['pull', 'push'], body: Buffer.alloc(0), maxBody: MAX_ERROR_BODY_BYTES }, [202]);
    const location = header(started, 'location');
    if (location === undefined) throw registryError(`POST ${started.url}: expected an upload Location, got none`);
    const url = new URL(location, started.url);
    url.searchParams.set('digest', digest);
    await this.request({ method: 'PUT', target: url.toString(), repository, actions: ['pull', 'push'], headers: { 'content-type': 'application/octet-stream' }, body: data, maxBody: MAX_ERROR_BODY_BYTES }, [201]);
    return { digest, size: data.length };
  }

  async getBlob(repository: string, digest: string): Promise<Buffer> {
    const res = await this.request({ method: 'GET', target: `/v2/${repository}/blobs/${digest}`, repository, actions: ['pull'], maxBody: MAX_BLOB_BYTES }, [200]);
    const actual = sha256Digest(res.body);
    if (actual !== digest) throw registryError(`GET ${res.url}: the blob's bytes hash to ${actual}, not to ${digest}`);
    return res.body;
  }

  /** A connection through the proxy's CONNECT tunnel, with TLS inside it for an https: URL. */
  private tunnelled(url: URL, proxy: NonNullable<ReturnType<typeof proxyFor>>): ConnectionFactory {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    return (_options, callback) => {
      // Node takes the socket through the callback when the factory returns nothing; an error goes alone.
      const fail = callback as (err: Error) => void;
      dialThroughProxy({ proxy, host, port, timeoutMs: this.timeoutMs }).then(
        (socket) => {
          if (url.protocol !== 'https:') {
            callback(null, socket);
            return;
          }
          // host is what the certificate is checked against (Node assumes localhost on a given socket); SNI takes names only.
          const secure = tls.connect({ socket, host, ...(net.isIP(host) ? {} : { servername: host }), ...(this.ca !== undefined ? { ca: this.ca } : {}), ALPNProtocols: ['http/1.1'] });
          secure.once('secureConnect', () => {
            secure.off('error', fail);
            callback(null, secure);
          });
          secure.once('error', fail);
        },
        fail,
      );
      return undefined;
    };
  }

  /** Lets go of kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  private async request(spec: RequestSpec, expected: number[]): Promise<Response> {
    const scope = `repository:${spec.repository}:${spec.actions.join(',')}`;
    let authorization = this.basic ?? this.tokens.get(scope);
    let res = await this.send(spec, authorization);
    if (res.status === 401) {
      const credential = await this.credentialOnce();
      authorization = await this.answerChallenge(res, scope, credential);
      if (authorization !== undefined) res = await this.send(spec, authorization);
      if (res.status === 401) {
        throw registryError(
          `${spec.method} ${res.url}: the registry answered 401 Unauthorized ` +
            (credential === undefined
              ? `and there are no credentials for ${this.registry} in ${this.credentials?.configFile ?? "Docker's configuration (none found)"}: log in with docker login ${this.registry}`
              : `to the credentials for ${this.registry} from ${this.credentials?.configFile ?? "Docker's configuration"}${detail(res)}: they are wrong, or lack ${spec.actions.join(' and ')} access to ${spec.repository}`),
        );
      }
    }
    if (!expected.includes(res.status)) {
      throw registryError(`${spec.method} ${res.url}: expected ${expected.join(' or ')}, got ${res.status}${detail(res)}`);
    }
    return res;
  }

  private credentialOnce(): Promise<Credential | undefined> {
    this.credential ??= this.credentials?.forHost(this.registry) ?? Promise.resolve(undefined);
    return this.credential;
  }

  /** The Authorization header that answers a 401's challenge, or undefined when none can. */
  private async answerChallenge(res: Response, scope: string, credential: Credential | undefined): Promise<string | undefined> {
    const challenges = parseChallenges(header(res, 'www-authenticate') ?? '');
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer !== undefined) {
      const token = await this.fetchToken(bearer, scope, credential);
      this.tokens.set(scope, token);
      return token;
    }
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (basic !== undefined && credential?.kind === 'basic') {
      this.basic = `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
      return this.basic;
    }
    if (challenges.length === 0) throw registryError(`${res.url} answered 401 without a WWW-Authenticate challenge to answer`);
    return undefined;
  }

  private async fetchToken(challenge: Challenge, scope: string, credential: Credential | undefined): Promise<string> {
    const realm = challenge.params.get('realm');
    if (!realm) throw registryError(`${this.baseUrl}: the Bearer challenge names no realm to get a token from`);
    const service = challenge.params.get('service');
    // The challenge's own scope can be narrower (a HEAD asks pull); ask for what this request needs too.
    const scopes = [...new Set([scope, ...(challenge.params.get('scope')?.split(' ') ?? [])])].filter((s) => s !== '');
    const url = new URL(realm);
    let spec: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: Buffer };
    if (credential?.kind === 'identityToken') {
      // An identity token is an OAuth refresh token: only the POST form takes it.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credential.token, client_id: TOKEN_CLIENT_ID });
      if (service) form.set('service', service);
      form.set('scope', scopes.join(' '));
      spec = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from(form.toString()) };
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      url.searchParams.set('client_id', TOKEN_CLIENT_ID);
      const headers: Record<string, string> = {};
      if (credential?.kind === 'basic') headers.authorization = `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
      spec = { method: 'GET', headers };
    }
    const res = await this.fetch(spec.method, url, spec.headers, spec.body, MAX_ERROR_BODY_BYTES, 0);
    if (res.status !== 200) {
      throw registryError(
        `the token server ${url.origin}${url.pathname} (realm of ${this.registry}) answered ${res.status}${detail(res)}` +
          (res.status === 401 || res.status === 403 ? ` to ${credential === undefined ? 'an anonymous request' : `the credentials for ${this.registry} from ${this.credentials?.configFile ?? "Docker's configuration"}`}` : ''),
      );
    }
    let answer: unknown;
    try {
      answer = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw registryError(`the token server ${url.origin}${url.pathname} answered 200 with something other than JSON`);
    }
    const token = typeof answer === 'object' && answer !== null ? ((answer as Record<string, unknown>).token ?? (answer as Record<string, unknown>).access_token) : undefined;
    if (typeof token !== 'string' || token === '') throw registryError(`the token server ${url.origin}${url.pathname} answered 200 without a token or access_token`);
    return `Bearer ${token}`;
  }

  private send(spec: RequestSpec, authorization: string | undefined): Promise<Response> {
    const url = new URL(spec.target, this.baseUrl);
    const headers = { ...spec.headers, ...(authorization !== undefined ? { authorization } : {}) };
    return this.fetch(spec.method, url, headers, spec.body, spec.maxBody, 0);
  }

  private fetch(method: string, url: URL, headers: Record<string, string>, body: Buffer | undefined, maxBody: number, redirects: number): Promise<Response> {
    const client = url.protocol === 'https:' ? https : http;
    const sameOrigin = url.origin === new URL(this.baseUrl).origin;
    const proxy = proxyFor(this.proxyEnv, url);
    // Through a proxy each request gets its own tunnel: an agent's pool cannot dial one, and Node
    // only calls createConnection for a request without an agent.
    const connection = proxy === undefined ? (sameOrigin ? { agent: this.agent } : {}) : { createConnection: this.tunnelled(url, proxy) };
    return new Promise<Response>((resolve, reject) => {
      const req = client.request(
        url,
        {
          method,
          headers: { ...headers, 'user-agent': 'slipway', ...(body !== undefined ? { 'content-length': String(body.length) } : {}) },
          // Only the registry's own origin shares its connections; a redirect elsewhere (blob storage) gets its own.
          ...connection,
          timeout: this.timeoutMs,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if ([301, 302, 303, 307, 308].includes(status) && res.headers.location && (method === 'GET' || method === 'HEAD')) {
            res.resume();
            if (redirects >= MAX_REDIRECTS) {
              reject(registryError(`${method} ${url}: more than ${MAX_REDIRECTS} redirects`));
              return;
            }
            const next = new URL(res.headers.location, url);
            // Credentials stay with the registry: storage a blob redirects to gets none.
            const nextHeaders = next.origin === url.origin ? headers : Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
            this.fetch(method, next, nextHeaders, undefined, maxBody, redirects + 1).then(resolve, reject);
            return;
          }
          const limit = status >= 200 && status < 300 ? maxBody : MAX_ERROR_BODY_BYTES;
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > limit) {
              req.destroy(registryError(`${method} ${url}: the answer is larger than ${limit} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('error', reject);
          res.on('end', () => resolve({ status, headers: res.headers, body: Buffer.concat(chunks), url: url.toString() }));
        },
      );
      req.on('timeout', () => req.destroy(registryError(`${method} ${url}: no answer for ${this.timeoutMs / 1000} s`)));
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(err instanceof CliError ? err : registryError(`${method} ${url}: ${err.code === 'ECONNREFUSED' ? 'connection refused (is the registry running there?)' : err.message}`, err)),
      );
      req.end(body);
    });
  }
}

type ConnectionFactory = NonNullable<http.RequestOptions['createConnection']>;

function header(res: Response, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** What the registry said about a failure: distribution's errors[] codes and messages, else the body's start. */
function detail(res: Response): string {
  const text = res.body.toString('utf8').trim();
  if (text === '') return '';
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    if (Array.isArray(parsed.errors) && parsed.errors.length > 0) {
      return ` (${parsed.errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ')})`;
    }
  } catch {
    // Not JSON: shown as text.
  }
  return ` (${text.slice(0, 200)})`;
}

/** WWW-Authenticate: one or more `Scheme k="v", k2=v2` challenges. */
export function parseChallenges(value: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  let current: Challenge | undefined;
  const skipSpaces = (): void => {
    while (i < value.length && /[\s,]/.test(value[i]!)) i++;
  };
  while (i < value.length) {
    skipSpaces();
    const tokenStart = i;
    while (i < value.length && /[^\s,=]/.test(value[i]!)) i++;
    const token = value.slice(tokenStart, i);
    if (token === '') break;
    let j = i;
    while (j < value.length && value[j] === ' ') j++;
    if (value[j] === '=' && current !== undefined) {
      i = j + 1;
      while (i < value.length && value[i] === ' ') i++;
      let param = '';
      if (value[i] === '"') {
        i++;
        while (i < value.length && value[i] !== '"') {
          if (value[i] === '\\' && i + 1 < value.length) i++;
          param += value[i];
          i++;
        }
        i++;
      } else {
        const start = i;
        while (i < value.length && value[i] !== ',') i++;
        param = value.slice(start, i).trim();
      }
      current.params.set(token.toLowerCase(), param);
    } else {
      current = { scheme: token.toLowerCase(), params: new Map() };
      challenges.push(current);
    }
  }
  return challenges;
}

function registryError(message: string, cause?: unknown): CliError {
  return new CliError('REGISTRY_FAILED', message, cause === undefined ? undefined : { cause });
}
