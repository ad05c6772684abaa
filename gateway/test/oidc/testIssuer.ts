// A local OIDC issuer for tests: HTTPS on 127.0.0.1 (a port of its own) with a test CA, serving
// a discovery document and a JWKS the way GitHub Actions' issuer does, counting the requests it
// gets, and able to rotate its signing key or answer badly on demand.
import { createHmac, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { exportJWK, SignJWT, type JWK } from 'jose';

export const DISCOVERY_PATH = '/.well-known/openid-configuration';
export const JWKS_PATH = '/.well-known/jwks';

export type TestAlgorithm = 'RS256' | 'ES256';

interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: JWK;
}

/** Replaces the normal answer to one path; the request has been counted already. */
export type Answer = (req: IncomingMessage, res: ServerResponse) => void;

export interface SignOptions {
  /** Header kid; default the current key's. */
  kid?: string;
  /** Signing key; default the current one. */
  key?: KeyObject;
  /** Extra or overriding protected header members. */
  header?: Record<string, unknown>;
}

export class TestIssuer {
  readonly requests = { discovery: 0, jwks: 0 };
  /** Set to change what the discovery document or the JWKS path answers. */
  readonly answers: { discovery?: Answer; jwks?: Answer } = {};
  readonly alg: TestAlgorithm;
  readonly url: string;
  #server: https.Server;
  #published: SigningKey[];
  #current: SigningKey;
  #serial = 0;

  private constructor(server: https.Server, url: string, alg: TestAlgorithm) {
    this.#server = server;
    this.url = url;
    this.alg = alg;
    this.#current = this.#newKey();
    this.#published = [this.#current];
  }

  /** Starts an issuer with the given TLS certificate (for 127.0.0.1) and key algorithm. */
  static async start(tls: { certPem: string; keyPem: string }, alg: TestAlgorithm = 'RS256'): Promise<TestIssuer> {
    // The server exists before the issuer (its URL needs the port), so requests find it through here.
    const route: { to?: TestIssuer } = {};
    const server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
      if (route.to !== undefined) return route.to.#onRequest(req, res);
      res.statusCode = 503;
      res.end();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const issuer = new TestIssuer(server, `https://127.0.0.1:${port}`, alg);
    route.to = issuer;
    for (const key of issuer.#published) key.publicJwk = await exportPublic(key, alg);
    return issuer;
  }

  get kid(): string {
    return this.#current.kid;
  }

  get publicKey(): KeyObject {
    return this.#current.publicKey;
  }

  get publicJwk(): JWK {
    return this.#current.publicJwk;
  }

  /** A fresh key pair of the issuer's algorithm that it does not publish. */
  unpublishedKey(): KeyObject {
    return this.#newKey().privateKey;
  }

  /**
   * Replaces the signing key with a new one; the JWKS then holds the new key only (or both when
   * `keepOld`). Returns the new kid.
   */
  async rotate(keepOld = false): Promise<string> {
    const next = this.#newKey();
    next.publicJwk = await exportPublic(next, this.alg);
    this.#published = keepOld ? [...this.#published, next] : [next];
    this.#current = next;
    return next.kid;
  }

  /** Signs `claims` as this issuer does (or with the overrides given). */
  sign(claims: Record<string, unknown>, options: SignOptions = {}): Promise<string> {
    return new SignJWT(claims)
      .setProtectedHeader({ alg: this.alg, typ: 'JWT', kid: options.kid ?? this.#current.kid, ...options.header })
      .sign(options.key ?? this.#current.privateKey);
  }

  /** An HS256 token whose HMAC key is this issuer's public key (the classic algorithm confusion). */
  signHs256WithPublicKey(claims: Record<string, unknown>): string {
    const signingInput = `${b64({ alg: 'HS256', typ: 'JWT', kid: this.#current.kid })}.${b64(claims)}`;
    const pem = this.#current.publicKey.export({ type: 'spki', format: 'pem' });
    return `${signingInput}.${createHmac('sha256', pem).update(signingInput).digest('base64url')}`;
  }

  /** GitHub Actions-shaped claims for a push to main of acme/web, with `aud`; overrides win. */
  githubClaims(audience: string, overrides: Record<string, unknown> = {}, nowMs: number = Date.now()): Record<string, unknown> {
    const iat = Math.floor(nowMs / 1000);
    return {
      jti: randomUUID(),
      sub: 'repo:acme/web:ref:refs/heads/main',
      aud: audience,
      ref: 'refs/heads/main',
      sha: '8b3f1e0c2d4a5b6c7d8e9f00112233445566778a',
      repository: 'acme/web',
      repository_owner: 'acme',
      repository_owner_id: '1001',
      repository_id: '2002',
      repository_visibility: 'private',
      run_id: '9000000001',
      run_number: '42',
      run_attempt: '1',
      actor: 'alice',
      actor_id: '3003',
      workflow: 'build',
      workflow_ref: 'acme/web/.github/workflows/build.yml@refs/heads/main',
      job_workflow_ref: 'acme/web/.github/workflows/build.yml@refs/heads/main',
      head_ref: '',
      base_ref: '',
      event_name: 'push',
      ref_type: 'branch',
      runner_environment: 'github-hosted',
      iss: this.url,
      nbf: iat - 5,
      iat,
      exp: iat + 300,
      ...overrides,
    };
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    res.on('error', () => {});
    const path = new URL(req.url ?? '/', this.url).pathname;
    if (req.method === 'GET' && path === DISCOVERY_PATH) {
      this.requests.discovery++;
      if (this.answers.discovery) return this.answers.discovery(req, res);
      return json(res, {
        issuer: this.url,
        jwks_uri: `${this.url}${JWKS_PATH}`,
        subject_types_supported: ['public', 'pairwise'],
        response_types_supported: ['id_token'],
        claims_supported: ['sub', 'aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'ref', 'repository', 'workflow'],
        id_token_signing_alg_values_supported: [this.alg],
        scopes_supported: ['openid'],
      });
    }
    if (req.method === 'GET' && path === JWKS_PATH) {
      this.requests.jwks++;
      if (this.answers.jwks) return this.answers.jwks(req, res);
      return json(res, { keys: this.#published.map((k) => k.publicJwk) });
    }
    res.statusCode = 404;
    res.end();
  }

  #newKey(): SigningKey {
    const kid = `${this.alg.toLowerCase()}-${++this.#serial}-${randomUUID().slice(0, 8)}`;
    const { privateKey, publicKey } =
      this.alg === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { kid, privateKey, publicKey, publicJwk: {} };
  }
}

export function json(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function b64(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

async function exportPublic(key: SigningKey, alg: TestAlgorithm): Promise<JWK> {
  return { ...(await exportJWK(key.publicKey)), kid: key.kid, use: 'sig', alg };
}
