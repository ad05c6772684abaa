// A token server for a docker-registry configured with `auth.token` (distribution's token
// authentication): a registry's 401 names this realm; clients get a signed JWT from it, with
// Basic credentials (GET) or an OAuth refresh/password grant (POST), for the scopes they ask.
//
// Gotchas this works around:
// - distribution 2.8 trusts a token through the x5c chain in its header: the signing key's
//   self-signed certificate is both the chain and the registry's rootcertbundle.
// - ES256 signatures in a JWS are r||s (IEEE P1363), not DER.
// - distribution matches access entries by exact repository name: no wildcards, so the harness's
//   own requests get a token for the repository in their path.
import { createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { HarnessError } from './harnessError.js';
import { runCommand } from './processes.js';

const TOKEN_LIFETIME_S = 300;
const MAX_FORM_BYTES = 64 * 1024;

export interface TokenUser {
  readonly username: string;
  readonly password: string;
  /** An OAuth refresh token the server accepts for this user (what `docker login` keeps as identitytoken). */
  readonly identityToken: string;
}

export interface TokenRequest {
  readonly method: string;
  /** The user the request proved to be; undefined when anonymous. */
  readonly user: string | undefined;
  /** 'basic' (GET with Authorization), 'password' or 'refresh_token' (POST grants), 'anonymous'. */
  readonly via: 'basic' | 'password' | 'refresh_token' | 'anonymous';
  readonly scopes: readonly string[];
  readonly service: string | undefined;
  /** The HTTP status answered. */
  readonly status: number;
}

export interface TokenServer {
  /** http://127.0.0.1:PORT/token */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** PEM file of the signing certificate, for the registry's rootcertbundle. */
  readonly certFile: string;
  /** Every request answered, oldest first. */
  readonly requests: readonly TokenRequest[];
  /** A token for `scopes` minted in-process (the harness's own registry requests). */
  mint(subject: string, scopes: readonly string[]): string;
  close(): Promise<void>;
}

interface Access {
  type: string;
  name: string;
  actions: string[];
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** resource:name:actions, where the name may hold ':' (a port) — the actions come last. */
function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return undefined;
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',').filter((a) => a !== '') };
}

/** Starts the token server on 127.0.0.1 with a fresh P-256 key and certificate in `dir`. */
export async function startTokenServer(dir: string, users: readonly TokenUser[]): Promise<TokenServer> {
  const keyFile = path.join(dir, 'token-signing.key');
  const certFile = path.join(dir, 'token-signing.crt');
  await runCommand('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=slipway-test-registry-token',
  ]);
  const key: KeyObject = createPrivateKey(await readFile(keyFile));
  const certPem = await readFile(certFile, 'utf8');
  const certDer = Buffer.from(certPem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''), 'base64');
  const service = 'slipway-test-registry';
  const issuer = 'slipway-test-token-issuer';
  const requests: TokenRequest[] = [];

  const mint = (subject: string, scopes: readonly string[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const access = scopes.map(parseScope).filter((a): a is Access => a !== undefined);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub: subject, aud: service, exp: now + TOKEN_LIFETIME_S, nbf: now - 10, iat: now, jti: randomBytes(12).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    return `${input}.${b64url(signature)}`;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    const answer = (status: number, body: unknown, record: Omit<TokenRequest, 'status'>): void => {
      requests.push({ ...record, status });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    if (req.method === 'GET') {
      const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter((s) => s !== '');
      const svc = url.searchParams.get('service') ?? undefined;
      const authz = req.headers.authorization;
      if (authz === undefined) {
        // Anonymous: a token with no access at all, as token servers give for private repositories.
        answer(200, { token: mint('', []), expires_in: TOKEN_LIFETIME_S }, { method: 'GET', user: undefined, via: 'anonymous', scopes, service: svc });
        return;
      }
      const decoded = authz.startsWith('Basic ') ? Buffer.from(authz.slice(6), 'base64').toString('utf8') : '';
      const colon = decoded.indexOf(':');
      const user = users.find((u) => colon > 0 && u.username === decoded.slice(0, colon) && u.password === decoded.slice(colon + 1));
      if (user === undefined) {
        answer(401, { errors: [{ code: 'UNAUTHORIZED', message: 'wrong user name or password' }] }, { method: 'GET', user: undefined, via: 'basic', scopes, service: svc });
        return;
      }
      answer(200, { token: mint(user.username, scopes), expires_in: TOKEN_LIFETIME_S, issued_at: new Date().toISOString() }, { method: 'GET', user: user.username, via: 'basic', scopes, service: svc });
      return;
    }
    if (req.method === 'POST') {
      let body = '';
      let tooBig = false;
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        body += c;
        if (body.length > MAX_FORM_BYTES) tooBig = true;
      });
      req.on('error', () => res.destroy());
      req.on('end', () => {
        const form = new URLSearchParams(tooBig ? '' : body);
        const scopes = (form.get('scope') ?? '').split(' ').filter((s) => s !== '');
        const svc = form.get('service') ?? undefined;
        const grant = form.get('grant_type');
        let user: TokenUser | undefined;
        let via: TokenRequest['via'] = 'anonymous';
        if (grant === 'refresh_token') {
          via = 'refresh_token';
          user = users.find((u) => u.identityToken === form.get('refresh_token'));
        } else if (grant === 'password') {
          via = 'password';
          user = users.find((u) => u.username === form.get('username') && u.password === form.get('password'));
        }
        if (user === undefined) {
          answer(401, { error: 'invalid_grant' }, { method: 'POST', user: undefined, via, scopes, service: svc });
          return;
        }
        answer(200, { access_token: mint(user.username, scopes), expires_in: TOKEN_LIFETIME_S, refresh_token: user.identityToken }, { method: 'POST', user: user.username, via, scopes, service: svc });
      });
      return;
    }
    res.writeHead(405).end();
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  if (!port) throw new HarnessError('PROTOCOL', 'the token server got no port');
  let closed: Promise<void> | undefined;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    requests,
    mint,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
