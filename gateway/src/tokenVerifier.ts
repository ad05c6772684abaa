import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWK, type JWTPayload } from 'jose';
import { GatewayError } from './gatewayError.js';
import {
  AGENT_AUDIENCE,
  AGENT_ID_PATTERN,
  BUILD_ID_PATTERN,
  BUILD_SCOPE,
  CLIENT_AUDIENCE,
  REPLICA_AUDIENCE,
  ADMIN_AUDIENCE,
  FLEET_PATTERN,
  MAX_TOKEN_BYTES,
  PROJECT_PATTERN,
  TOKEN_ALGORITHM,
} from './tokenClaims.js';

/** A public key given directly (already imported) rather than as a JWK. */
export interface VerificationKey {
  kid: string;
  key: KeyObject;
}

export interface TokenVerifierOptions {
  /** Expected `iss` claim. */
  issuer: string;
  /** ES256 public keys, each with a kid: a JWKS document, a list of JWKs, or imported KeyObjects. */
  keys: JSONWebKeySet | readonly JWK[] | readonly VerificationKey[];
  /** Allowed clock skew for exp/nbf. Default 30 s. */
  clockToleranceSec?: number;
}

export interface ClientIdentity {
  subject: string;
  project: string;
  scopes: string[];
  expiresAt: Date;
  /** The `jti` claim, when the token has one. */
  tokenId: string | undefined;
  /** Set for build tokens: the one build this token may reach builders for. */
  buildId: string | undefined;
  /** Set when the token came from a CI identity the project's trust policy marks untrusted (e.g. a fork's pull request). */
  untrusted?: boolean;
  /** For build tokens: the id of the project token the build was created with. */
  parentTokenId?: string;
}

export interface AgentIdentity {
  agentId: string;
  fleet: string;
  expiresAt: Date;
}

const DEFAULT_CLOCK_TOLERANCE_SEC = 30;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
// Members of a JWK that only private (or symmetric) keys have.
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

export class TokenVerifier {
  readonly #issuer: string;
  readonly #keys: Map<string, KeyObject>;
  readonly #clockToleranceSec: number;

  constructor(options: TokenVerifierOptions) {
    if (typeof options.issuer !== 'string' || options.issuer === '') {
      throw new GatewayError('CONFIG_INVALID', 'token issuer must be a non-empty string');
    }
    const tolerance = options.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC;
    if (!Number.isFinite(tolerance) || tolerance < 0) {
      throw new GatewayError('CONFIG_INVALID', `clockToleranceSec must be a finite number >= 0, got ${tolerance}`);
    }
    this.#issuer = options.issuer;
    this.#clockToleranceSec = tolerance;
    this.#keys = importVerificationKeys(options.keys, 'token verification keys');
  }

  /** Kids of the keys this verifier accepts. */
  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /**
   * Verifies a client token. `requiredScope` (default `build`) must be among its scopes, otherwise
   * FORBIDDEN; pass null to authenticate without authorising anything in particular.
   */
  async verifyClient(token: string, requiredScope: string | null = BUILD_SCOPE): Promise<ClientIdentity> {
    const { payload, expiresAt } = await this.#verify(token, CLIENT_AUDIENCE, AGENT_AUDIENCE);

    const subject = requireString(payload, 'sub', 'a non-empty string');
    if (!('project' in payload)) {
      throw unauthenticated(`token has no 'project' claim; expected a project name matching ${PROJECT_PATTERN.source}`);
    }
    const project = payload['project'];
    if (typeof project !== 'string' || !PROJECT_PATTERN.test(project)) {
      throw unauthenticated(`token project is ${show(project)}, expected a name matching ${PROJECT_PATTERN.source}`);
    }
    const scopes = parseScopes(payload['scope']);
    if (requiredScope !== null && !scopes.includes(requiredScope)) {
      throw new GatewayError(
        'FORBIDDEN',
        scopes.length === 0
          ? `token has no scopes; '${requiredScope}' is required`
          : `token scopes are ${show(scopes.join(' '))}, expected them to include '${requiredScope}'`,
      );
    }
    const jti = payload.jti;
    if (jti !== undefined && typeof jti !== 'string') {
      throw unauthenticated(`token 'jti' claim is ${show(jti)}, expected a string`);
    }
    const build = payload['build'];
    if (build !== undefined && (typeof build !== 'string' || !BUILD_ID_PATTERN.test(build))) {
      throw unauthenticated(`token 'build' claim is ${show(build)}, expected a build id (a lowercase UUID)`);
    }
    const untrusted = payload['untrusted'] === true ? true : undefined;
    const via = payload['via'];
    if (via !== undefined && typeof via !== 'string') throw unauthenticated(`token 'via' claim is ${show(via)}, expected a token id`);
    return {
      subject,
      project,
      scopes,
      expiresAt,
      tokenId: jti,
      buildId: build,
      ...(untrusted ? { untrusted } : {}),
      ...(via !== undefined ? { parentTokenId: via } : {}),
    };
  }

  /** Verifies an admin API token; returns who holds it. */
  async verifyAdmin(token: string): Promise<{ subject: string }> {
    const { payload } = await this.#verify(token, ADMIN_AUDIENCE, CLIENT_AUDIENCE);
    return { subject: requireString(payload, 'sub', 'the administrator') };
  }

  /** Verifies a token another gateway replica presents; returns its gateway id. */
  async verifyReplica(token: string): Promise<{ gatewayId: string }> {
    const { payload } = await this.#verify(token, REPLICA_AUDIENCE, CLIENT_AUDIENCE);
    return { gatewayId: requireString(payload, 'sub', 'a gateway id') };
  }

  /** Verifies an agent join token. */
  async verifyAgent(token: string): Promise<AgentIdentity> {
    const { payload, expiresAt } = await this.#verify(token, AGENT_AUDIENCE, CLIENT_AUDIENCE);
    const agentId = requireString(payload, 'sub', `an agent id matching ${AGENT_ID_PATTERN.source}`);
    if (!AGENT_ID_PATTERN.test(agentId)) {
      throw unauthenticated(`token agent id (sub) is ${show(agentId)}, expected one matching ${AGENT_ID_PATTERN.source}`);
    }
    const fleet = requireString(payload, 'fleet', `a fleet name matching ${FLEET_PATTERN.source}`);
    if (!FLEET_PATTERN.test(fleet)) {
      throw unauthenticated(`token fleet is ${show(fleet)}, expected a name matching ${FLEET_PATTERN.source}`);
    }
    return { agentId, fleet, expiresAt };
  }

  async #verify(
    token: string,
    audience: string,
    otherAudience: string,
  ): Promise<{ payload: JWTPayload; expiresAt: Date }> {
    if (typeof token !== 'string' || token === '') throw unauthenticated('token is empty');
    // Checked before anything else so that a huge header costs nothing to reject. Non-ASCII
    // characters, which would make bytes exceed characters, fail the base64url check below.
    if (token.length > MAX_TOKEN_BYTES) {
      throw unauthenticated(`token is ${token.length} bytes, more than the ${MAX_TOKEN_BYTES}-byte limit`);
    }
    // Inspecting the header ourselves, before jose does, turns a bad token into a precise message.
    const parts = token.split('.');
    if (parts.length !== 3) {
      throw unauthenticated(`malformed token: expected 3 dot-separated parts (JWS compact form), got ${parts.length}`);
    }
    const header = decodeSegment(parts[0]!, 'header');
    decodeSegment(parts[1]!, 'payload');
    if (!BASE64URL.test(parts[2]!)) throw unauthenticated('malformed token: signature is not base64url');

    if (header['alg'] !== TOKEN_ALGORITHM) {
      throw unauthenticated(`token algorithm ${show(header['alg'])} is not accepted; expected ${TOKEN_ALGORITHM}`);
    }
    const kid = header['kid'];
    if (kid === undefined) {
      throw unauthenticated(`token header has no kid; expected one of ${this.#knownKids()}`);
    }
    const key = typeof kid === 'string' ? this.#keys.get(kid) : undefined;
    if (key === undefined) {
      throw unauthenticated(`no key with kid ${show(kid)}; known kids are ${this.#knownKids()}`);
    }

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms: [TOKEN_ALGORITHM],
        issuer: this.#issuer,
        audience,
        clockTolerance: this.#clockToleranceSec,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw this.#translate(err, audience, kid as string);
    }

    // A token naming both audiences would be usable as either kind; refuse it rather than guess.
    if (Array.isArray(payload.aud) && payload.aud.includes(otherAudience)) {
      throw unauthenticated(
        `token audience is ${show(payload.aud)}, expected '${audience}' without '${otherAudience}'`,
      );
    }
    return { payload, expiresAt: new Date((payload.exp as number) * 1000) };
  }

  #translate(err: unknown, audience: string, kid: string): GatewayError {
    if (err instanceof joseErrors.JWTExpired) {
      const exp = err.payload.exp;
      return unauthenticated(`token expired at ${isoTime(exp)}; it is now ${new Date().toISOString()}`, err);
    }
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      const { claim, reason, payload } = err;
      if (reason === 'missing') {
        const expected =
          claim === 'aud' ? `'${audience}'` : claim === 'iss' ? `'${this.#issuer}'` : claim === 'exp' ? 'an expiry time' : 'one';
        return unauthenticated(`token has no '${claim}' claim; expected ${expected}`, err);
      }
      if (reason === 'invalid') {
        return unauthenticated(`token '${claim}' claim is ${show(payload[claim])}, expected a NumericDate (seconds)`, err);
      }
      switch (claim) {
        case 'aud':
          return unauthenticated(`token audience is ${show(payload.aud)}, expected '${audience}'`, err);
        case 'iss':
          return unauthenticated(`token issuer is ${show(payload.iss)}, expected '${this.#issuer}'`, err);
        case 'nbf':
          return unauthenticated(
            `token is not valid before ${isoTime(payload.nbf)}; it is now ${new Date().toISOString()}`,
            err,
          );
        default:
          return unauthenticated(`token '${claim}' claim is ${show(payload[claim])}, which failed validation`, err);
      }
    }
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
      return unauthenticated(`token signature does not verify with the key whose kid is '${kid}'`, err);
    }
    if (err instanceof joseErrors.JOSEAlgNotAllowed) {
      return unauthenticated(`token algorithm is not accepted; expected ${TOKEN_ALGORITHM}`, err);
    }
    // jose's remaining messages are fixed strings ("Invalid Compact JWS", ...): safe to repeat.
    if (err instanceof joseErrors.JOSEError || err instanceof TypeError) {
      return unauthenticated(`malformed token: ${err.message}`, err);
    }
    return new GatewayError('INTERNAL', `token verification failed unexpectedly: ${String(err)}`, { cause: err });
  }

  #knownKids(): string {
    return [...this.#keys.keys()].map((k) => `'${k}'`).join(', ');
  }
}

/** Extracts the token from an `Authorization: Bearer <token>` header value. */
export function parseBearer(authorizationHeader: string | undefined): string {
  if (authorizationHeader === undefined || authorizationHeader.trim() === '') {
    throw unauthenticated("missing Authorization header; expected 'Bearer <token>'");
  }
  const match = /^([^\s]+)(?:\s+(.*))?$/s.exec(authorizationHeader.trim());
  const scheme = match?.[1] ?? '';
  // Auth schemes are case-insensitive (RFC 9110 §11.1).
  if (scheme.toLowerCase() !== 'bearer') {
    throw unauthenticated(`Authorization scheme is ${show(scheme)}, expected 'Bearer'`);
  }
  const token = match?.[2]?.trim() ?? '';
  if (token === '') throw unauthenticated("Authorization header has no token after 'Bearer'");
  if (/\s/.test(token)) throw unauthenticated("Authorization header has more than one value after 'Bearer'");
  return token;
}

/**
 * Reads a JWKS file holding the ES256 public keys that tokens may be signed with. Refuses files
 * holding private key material: the gateway never needs the signing key.
 */
export async function loadVerificationKeys(path: string): Promise<JSONWebKeySet> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `cannot read verification keys from ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `verification keys file ${path} is not JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!isRecord(doc) || !Array.isArray(doc['keys'])) {
    throw new GatewayError('CONFIG_INVALID', `verification keys file ${path} must be a JWKS: an object with a "keys" array`);
  }
  const keys = doc['keys'] as unknown[];
  const withPrivate = keys.flatMap((k, i) => {
    if (!isRecord(k)) return [];
    const members = PRIVATE_JWK_MEMBERS.filter((m) => m in k);
    return members.length > 0 ? [`key ${describeKid(k, i)} has '${members.join("', '")}'`] : [];
  });
  if (withPrivate.length > 0) {
    throw new GatewayError(
      'CONFIG_INVALID',
      `verification keys file ${path} contains private key material (${withPrivate.join('; ')}); ` +
        'give the gateway the public key set (jwks.json), never the signing key (jwks.private.json)',
    );
  }
  // Validates every key now, reporting all problems at once, so a bad file fails at startup.
  importVerificationKeys(keys as JWK[], `verification keys file ${path}`);
  return { keys: keys as JWK[] };
}

function importVerificationKeys(
  input: TokenVerifierOptions['keys'],
  source: string,
): Map<string, KeyObject> {
  const list: readonly unknown[] = Array.isArray(input)
    ? input
    : isRecord(input) && Array.isArray((input as JSONWebKeySet).keys)
      ? (input as JSONWebKeySet).keys
      : [];
  if (list.length === 0) {
    throw new GatewayError('CONFIG_INVALID', `${source}: expected at least one ES256 public key with a kid, got none`);
  }
  const problems: string[] = [];
  const keys = new Map<string, KeyObject>();
  list.forEach((entry, index) => {
    const imported = importOne(entry, index);
    if (typeof imported === 'string') {
      problems.push(imported);
    } else if (keys.has(imported.kid)) {
      problems.push(`key #${index}: kid '${imported.kid}' is used by more than one key`);
    } else {
      keys.set(imported.kid, imported.key);
    }
  });
  if (problems.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `${source}: ${problems.join('; ')}`);
  }
  return keys;
}

/** Returns the imported key, or a sentence saying what is wrong with it. */
function importOne(entry: unknown, index: number): VerificationKey | string {
  if (!isRecord(entry)) return `key #${index} is ${show(entry)}, expected a JWK object`;
  const kid = entry['kid'];
  if (typeof kid !== 'string' || kid === '') return `key #${index} has no kid`;
  const name = `key '${kid}'`;

  if ('key' in entry) {
    const key = entry['key'] as KeyObject;
    if (key?.type !== 'public') return `${name} must be a public KeyObject, got ${key?.type ?? typeof key}`;
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (key.asymmetricKeyType !== 'ec' || curve !== 'prime256v1') {
      return `${name} is ${key.asymmetricKeyType ?? 'unknown'}/${curve ?? 'no curve'}, expected an EC P-256 key for ES256`;
    }
    return { kid, key };
  }

  const privateMembers = PRIVATE_JWK_MEMBERS.filter((m) => m in entry);
  if (privateMembers.length > 0) {
    return `${name} contains private key material ('${privateMembers.join("', '")}'); only public keys are accepted`;
  }
  if (entry['kty'] !== 'EC' || entry['crv'] !== 'P-256') {
    return `${name} is kty ${show(entry['kty'])} crv ${show(entry['crv'])}, expected kty 'EC' crv 'P-256' for ES256`;
  }
  if (entry['alg'] !== undefined && entry['alg'] !== TOKEN_ALGORITHM) {
    return `${name} has alg ${show(entry['alg'])}, expected '${TOKEN_ALGORITHM}'`;
  }
  if (entry['use'] !== undefined && entry['use'] !== 'sig') {
    return `${name} has use ${show(entry['use'])}, expected 'sig'`;
  }
  try {
    return { kid, key: createPublicKey({ key: entry as JsonWebKey, format: 'jwk' }) };
  } catch (err) {
    return `${name} is not a valid EC public key: ${(err as Error).message}`;
  }
}

function decodeSegment(segment: string, what: 'header' | 'payload'): Record<string, unknown> {
  if (segment === '' || !BASE64URL.test(segment)) {
    throw unauthenticated(`malformed token: ${what} is not base64url`);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw unauthenticated(`malformed token: ${what} is not JSON`);
  }
  if (!isRecord(value)) throw unauthenticated(`malformed token: ${what} is ${show(value)}, expected a JSON object`);
  return value;
}

function parseScopes(scope: unknown): string[] {
  if (scope === undefined) return [];
  if (typeof scope === 'string') return scope.split(/\s+/).filter((s) => s !== '');
  if (Array.isArray(scope) && scope.every((s) => typeof s === 'string')) return scope.filter((s) => s !== '');
  throw unauthenticated(`token 'scope' claim is ${show(scope)}, expected a space-separated string or an array of strings`);
}

function requireString(payload: JWTPayload, claim: string, expected: string): string {
  const value = payload[claim];
  if (value === undefined) throw unauthenticated(`token has no '${claim}' claim; expected ${expected}`);
  if (typeof value !== 'string' || value === '') {
    throw unauthenticated(`token '${claim}' claim is ${show(value)}, expected ${expected}`);
  }
  return value;
}

function unauthenticated(message: string, cause?: unknown): GatewayError {
  return new GatewayError('UNAUTHENTICATED', message, cause === undefined ? undefined : { cause });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isoTime(seconds: unknown): string {
  return typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : show(seconds);
}

function describeKid(key: Record<string, unknown>, index: number): string {
  return typeof key['kid'] === 'string' ? `'${key['kid']}'` : `#${index}`;
}

/**
 * Renders a value taken from a token for an error message. Values are attacker-controlled:
 * bounded in length and stripped of control characters so they cannot flood or forge log lines.
 */
function show(value: unknown): string {
  if (value === undefined) return 'missing';
  let text: string;
  if (typeof value === 'string') {
    text = `'${value}'`;
  } else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    text = `[${value.map((v) => `'${v}'`).join(', ')}]`;
  } else {
    text = JSON.stringify(value) ?? String(value);
  }
  text = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
