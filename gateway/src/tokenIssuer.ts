import { createPrivateKey, generateKeyPairSync, randomUUID, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SignJWT, type JWK } from 'jose';
import { GatewayError } from './gatewayError.js';
import {
  BUILD_ID_PATTERN,
  AGENT_AUDIENCE,
  AGENT_ID_PATTERN,
  CLIENT_AUDIENCE,
  REPLICA_AUDIENCE,
  ADMIN_AUDIENCE,
  FLEET_PATTERN,
  PROJECT_PATTERN,
  TOKEN_ALGORITHM,
} from './tokenClaims.js';

export interface TokenIssuerOptions {
  /** Written to `iss`; must equal the verifier's issuer. */
  issuer: string;
  /** ES256 private key (EC P-256, with `d`) carrying a kid. */
  privateJwk: JWK;
}

export interface ClientTokenRequest {
  project: string;
  subject: string;
  scopes: readonly string[];
  ttlSec: number;
  /** Issue as if at this time (tests use it for expired and not-yet-valid tokens). Default now. */
  issuedAt?: Date;
}

export interface BuildTokenRequest {
  project: string;
  subject: string;
  buildId: string;
  ttlSec: number;
  issuedAt?: Date;
  /** The project token the build was created with: revoking it ends the build's token too. */
  parentTokenId?: string;
  /** The build came from an untrusted CI identity. */
  untrusted?: boolean;
}

export interface AgentTokenRequest {
  agentId: string;
  fleet: string;
  ttlSec: number;
  issuedAt?: Date;
}

export interface SigningKeyPair {
  privateJwk: JWK;
  publicJwk: JWK;
}

/**
 * Mints Slipway tokens. Production deployments may mint them elsewhere (any ES256 signer that
 * writes the same claims works); this class serves the dev launcher and tests, and refuses to
 * produce a token the verifier would reject for its shape.
 */
export class TokenIssuer {
  readonly #issuer: string;
  readonly #kid: string;
  readonly #key: KeyObject;

  constructor(options: TokenIssuerOptions) {
    const { issuer, privateJwk } = options;
    if (typeof issuer !== 'string' || issuer === '') {
      throw new GatewayError('CONFIG_INVALID', 'token issuer must be a non-empty string');
    }
    if (typeof privateJwk?.kid !== 'string' || privateJwk.kid === '') {
      throw new GatewayError('CONFIG_INVALID', 'token signing key has no kid');
    }
    if (privateJwk.kty !== 'EC' || privateJwk.crv !== 'P-256' || typeof privateJwk.d !== 'string') {
      throw new GatewayError(
        'CONFIG_INVALID',
        `token signing key '${privateJwk.kid}' is kty ${privateJwk.kty} crv ${privateJwk.crv}` +
          `${typeof privateJwk.d === 'string' ? '' : ' without d'}, expected a private EC P-256 key for ES256`,
      );
    }
    this.#issuer = issuer;
    this.#kid = privateJwk.kid;
    this.#key = createPrivateKey({ key: privateJwk as JsonWebKey, format: 'jwk' });
  }

  get kid(): string {
    return this.#kid;
  }

  async issueClientToken(request: ClientTokenRequest): Promise<string> {
    const { project, subject, scopes, ttlSec, issuedAt } = request;
    if (!PROJECT_PATTERN.test(project)) {
      throw new GatewayError('BAD_REQUEST', `project '${project}' does not match ${PROJECT_PATTERN.source}`);
    }
    if (subject === '') throw new GatewayError('BAD_REQUEST', 'token subject must be non-empty');
    const bad = scopes.filter((s) => s === '' || /\s/.test(s));
    if (bad.length > 0) {
      throw new GatewayError('BAD_REQUEST', `scopes must be non-empty words without spaces, got '${bad.join("', '")}'`);
    }
    return this.#sign({ project, scope: scopes.join(' ') }, CLIENT_AUDIENCE, subject, ttlSec, issuedAt);
  }

  async issueBuildToken(request: BuildTokenRequest): Promise<string> {
    const { project, subject, buildId, ttlSec, issuedAt, parentTokenId, untrusted } = request;
    if (!PROJECT_PATTERN.test(project)) {
      throw new GatewayError('BAD_REQUEST', `project '${project}' does not match ${PROJECT_PATTERN.source}`);
    }
    if (!BUILD_ID_PATTERN.test(buildId)) {
      throw new GatewayError('BAD_REQUEST', `build id '${buildId}' is not a lowercase UUID`);
    }
    if (subject === '') throw new GatewayError('BAD_REQUEST', 'token subject must be non-empty');
    return this.#sign(
      { project, scope: 'build', build: buildId, ...(parentTokenId ? { via: parentTokenId } : {}), ...(untrusted ? { untrusted: true } : {}) },
      CLIENT_AUDIENCE,
      subject,
      ttlSec,
      issuedAt,
    );
  }

  /** A token for the admin API (projects, tokens, trust policies). */
  async issueAdminToken(subject: string, ttlSec: number): Promise<string> {
    if (subject === '') throw new GatewayError('BAD_REQUEST', 'admin token subject must be non-empty');
    return this.#sign({ scope: 'admin' }, ADMIN_AUDIENCE, subject, ttlSec, undefined);
  }

  /** A project token with an id the caller records (so it can be listed and revoked). */
  async issueProjectToken(request: ClientTokenRequest & { tokenId: string; untrusted?: boolean }): Promise<string> {
    const { project, subject, scopes, ttlSec, issuedAt, tokenId, untrusted } = request;
    if (!PROJECT_PATTERN.test(project)) {
      throw new GatewayError('BAD_REQUEST', `project '${project}' does not match ${PROJECT_PATTERN.source}`);
    }
    return this.#sign({ project, scope: scopes.join(' '), ...(untrusted ? { untrusted: true } : {}) }, CLIENT_AUDIENCE, subject, ttlSec, issuedAt, tokenId);
  }

  /** A token by which this gateway replica proves itself to another one. */
  async issueReplicaToken(gatewayId: string, ttlSec: number): Promise<string> {
    if (gatewayId === '') throw new GatewayError('BAD_REQUEST', 'gateway id must be non-empty');
    return this.#sign({}, REPLICA_AUDIENCE, gatewayId, ttlSec, undefined);
  }

  async issueAgentToken(request: AgentTokenRequest): Promise<string> {
    const { agentId, fleet, ttlSec, issuedAt } = request;
    if (!AGENT_ID_PATTERN.test(agentId)) {
      throw new GatewayError('BAD_REQUEST', `agent id '${agentId}' does not match ${AGENT_ID_PATTERN.source}`);
    }
    if (!FLEET_PATTERN.test(fleet)) {
      throw new GatewayError('BAD_REQUEST', `fleet '${fleet}' does not match ${FLEET_PATTERN.source}`);
    }
    return this.#sign({ fleet }, AGENT_AUDIENCE, agentId, ttlSec, issuedAt);
  }

  async #sign(
    claims: Record<string, unknown>,
    audience: string,
    subject: string,
    ttlSec: number,
    issuedAt: Date | undefined,
    tokenId: string = randomUUID(),
  ): Promise<string> {
    if (!Number.isInteger(ttlSec) || ttlSec <= 0) {
      throw new GatewayError('BAD_REQUEST', `ttlSec must be a positive integer, got ${ttlSec}`);
    }
    const iat = Math.floor((issuedAt ?? new Date()).getTime() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: TOKEN_ALGORITHM, kid: this.#kid })
      .setIssuer(this.#issuer)
      .setAudience(audience)
      .setSubject(subject)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + ttlSec)
      .setJti(tokenId)
      .sign(this.#key);
  }
}

/** Creates a fresh ES256 signing key: the private JWK for the issuer, the public one for verifiers. */
export function generateSigningKey(kid: string): SigningKeyPair {
  if (typeof kid !== 'string' || kid === '') throw new GatewayError('BAD_REQUEST', 'kid must be a non-empty string');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const meta = { kid, alg: TOKEN_ALGORITHM, use: 'sig' };
  return {
    privateJwk: { ...(privateKey.export({ format: 'jwk' }) as JWK), ...meta },
    publicJwk: { ...(publicKey.export({ format: 'jwk' }) as JWK), ...meta },
  };
}

/**
 * Reads the gateway's signing key ring: a JWKS of private ES256 keys (or one JWK). The first key
 * signs; the others only verify, which is how a key is rotated with overlap: add the new key
 * second, roll out, move it first, roll out, and drop the old one once tokens it signed have
 * expired.
 */
export async function loadSigningKeys(path: string): Promise<SigningKeyPair[]> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `cannot read the signing keys from ${path}: ${(err as Error).message}`, { cause: err });
  }
  const keys = (doc as { keys?: unknown }).keys;
  const list = (Array.isArray(keys) ? keys : [doc]) as unknown[];
  const problems: string[] = [];
  const pairs: SigningKeyPair[] = [];
  const kids = new Set<string>();
  list.forEach((entry, i) => {
    const jwk = entry as JWK;
    if (typeof jwk !== 'object' || jwk === null || typeof jwk.d !== 'string' || typeof jwk.kid !== 'string') {
      problems.push(`key #${i} is not a private EC P-256 JWK with a kid`);
      return;
    }
    if (kids.has(jwk.kid)) problems.push(`key #${i}: kid '${jwk.kid}' is used twice`);
    kids.add(jwk.kid);
    try {
      new TokenIssuer({ issuer: 'check', privateJwk: jwk });
    } catch (err) {
      problems.push(`key '${jwk.kid}': ${(err as Error).message}`);
      return;
    }
    const { d: _d, ...publicJwk } = jwk;
    pairs.push({ privateJwk: jwk, publicJwk });
  });
  if (pairs.length === 0 && problems.length === 0) problems.push('it holds no key');
  if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `signing keys file ${path}: ${problems.join('; ')}`);
  return pairs;
}

/**
 * Reads the private ES256 key that signs build tokens: a JWK, or a JWKS whose first key is used
 * (the dev PKI's jwks.private.json). Returns the key pair, public half derived from it.
 */
export async function loadSigningKey(path: string): Promise<SigningKeyPair> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `cannot read the signing key from ${path}: ${(err as Error).message}`, { cause: err });
  }
  const keys = (doc as { keys?: unknown }).keys;
  const jwk = (Array.isArray(keys) ? keys[0] : doc) as JWK | undefined;
  if (typeof jwk !== 'object' || jwk === null || typeof jwk.d !== 'string' || typeof jwk.kid !== 'string') {
    throw new GatewayError('CONFIG_INVALID', `signing key file ${path} must hold a private EC P-256 JWK with a kid (or a JWKS of them); it does not`);
  }
  // Constructing an issuer validates the key's type and curve with a precise message.
  new TokenIssuer({ issuer: 'check', privateJwk: jwk });
  const { d: _d, ...publicJwk } = jwk;
  return { privateJwk: jwk, publicJwk };
}
