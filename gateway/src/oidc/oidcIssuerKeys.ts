// The signing keys of the OIDC issuers that trust policies name (GitHub Actions, GitLab, ...),
// found through OpenID Connect discovery and cached per issuer.
//
// Who may make us fetch: anyone who can send a token naming a trusted issuer. So fetches are
// bounded per issuer, not per request: a cold or expired cache costs one fetch however many
// requests are waiting (they share it), an unknown kid costs at most one JWKS fetch per cooldown,
// and a failed fetch is remembered for a short back-off instead of being retried by every caller.
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import { GatewayError } from '../gatewayError.js';
import { isRecord, showClaim } from './claimValue.js';

export interface OidcIssuerKeysOptions {
  /** Keys and the discovery document are fetched again once older than this. Default 10 minutes. */
  maxAgeMs?: number;
  /**
   * Least time between two fetches of one issuer's JWKS made because a token named a kid the
   * cache does not hold. Default 60 s.
   */
  unknownKidCooldownMs?: number;
  /** After a failed fetch, lookups fail with the same error for this long without asking again. Default 5 s. */
  failureBackoffMs?: number;
  /** Limit for each HTTPS request, from connecting to the last byte. Default 10 s. */
  fetchTimeoutMs?: number;
  /** Largest discovery document or JWKS accepted. Default 256 KiB. */
  maxResponseBytes?: number;
  /** PEM CA certificate(s) trusted in addition to the system's (a private issuer, tests). */
  extraCa?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** Milliseconds since the epoch. Default Date.now; tests drive it. */
  now?: () => number;
}

/** A public key an issuer signs tokens with. */
export interface IssuerKey {
  kid: string;
  key: KeyObject;
  /** The JWK's `alg`, when the issuer states one. */
  alg: string | undefined;
}

const DEFAULTS = {
  maxAgeMs: 10 * 60_000,
  unknownKidCooldownMs: 60_000,
  failureBackoffMs: 5_000,
  fetchTimeoutMs: 10_000,
  maxResponseBytes: 256 * 1024,
};
// Real issuers publish a handful of keys; more than this is not a JWKS we want to hold.
const MAX_KEYS = 100;
const DISCOVERY_PATH = '/.well-known/openid-configuration';
const MIN_RSA_BITS = 2048;
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

interface IssuerEntry {
  jwksUri: URL | undefined;
  discoveredAt: number;
  keys: Map<string, IssuerKey> | undefined;
  /** Kids present in the JWKS that cannot be used, with the reason, for precise refusals. */
  unusable: Map<string, string>;
  fetchedAt: number;
  /** When the last JWKS fetch started, successful or not: the cooldown counts from here. */
  lastAttemptAt: number;
  failure: { error: GatewayError; at: number } | undefined;
  inFlight: Promise<void> | undefined;
}

/**
 * Returns the reason `issuer` cannot be used as an OIDC issuer URL, or undefined when it can:
 * https, a host, no credentials, query or fragment (discovery appends a path to it).
 */
export function issuerUrlProblem(issuer: unknown): string | undefined {
  if (typeof issuer !== 'string' || issuer === '') return `issuer is ${showClaim(issuer)}, expected an https:// URL`;
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return `issuer ${showClaim(issuer)} is not a URL, expected an https:// URL`;
  }
  if (url.protocol !== 'https:') return `issuer ${showClaim(issuer)} is ${url.protocol.slice(0, -1)}, expected an https:// URL`;
  if (url.username !== '' || url.password !== '') return `issuer ${showClaim(url.host)} must not carry credentials`;
  if (url.search !== '' || url.hash !== '' || issuer.includes('?') || issuer.includes('#')) {
    return `issuer ${showClaim(issuer)} must not have a query or fragment`;
  }
  return undefined;
}

export class OidcIssuerKeys {
  readonly #maxAgeMs: number;
  readonly #cooldownMs: number;
  readonly #failureBackoffMs: number;
  readonly #fetchTimeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #ca: Array<string | Buffer> | undefined;
  readonly #now: () => number;
  readonly #issuers = new Map<string, IssuerEntry>();

  constructor(options: OidcIssuerKeysOptions = {}) {
    const problems: string[] = [];
    const positive = (name: keyof typeof DEFAULTS, allowZero: boolean): number => {
      const value = options[name] ?? DEFAULTS[name];
      if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
        problems.push(`${name} must be a finite number ${allowZero ? '>= 0' : '> 0'}, got ${value}`);
      }
      return value;
    };
    this.#maxAgeMs = positive('maxAgeMs', false);
    this.#cooldownMs = positive('unknownKidCooldownMs', true);
    this.#failureBackoffMs = positive('failureBackoffMs', true);
    this.#fetchTimeoutMs = positive('fetchTimeoutMs', false);
    this.#maxResponseBytes = positive('maxResponseBytes', false);
    if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `OIDC issuer keys: ${problems.join('; ')}`);
    const extra = options.extraCa === undefined ? [] : Array.isArray(options.extraCa) ? options.extraCa : [options.extraCa];
    // Node's `ca` replaces the system store rather than adding to it, so the system roots go in too.
    this.#ca = extra.length > 0 ? [...rootCertificates, ...(extra as Array<string | Buffer>)] : undefined;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The key `kid` of `issuer`. Fetches discovery and JWKS when the cache is cold or older than
   * the max age; refetches the JWKS once for an unknown kid unless the cooldown forbids it.
   * Unknown kid: UNAUTHENTICATED. Issuer unreachable or answering nonsense: UPSTREAM_UNAVAILABLE.
   */
  async getKey(issuer: string, kid: string): Promise<IssuerKey> {
    const problem = issuerUrlProblem(issuer);
    if (problem !== undefined) throw new GatewayError('CONFIG_INVALID', problem);
    const entry = this.#entryFor(issuer);

    // A fetch under way may be the one that brings this kid: wait for it rather than judge early.
    if (entry.inFlight !== undefined) await entry.inFlight.catch(() => undefined);
    if (entry.keys === undefined || this.#now() - entry.fetchedAt >= this.#maxAgeMs) await this.#refresh(issuer, entry);
    const cached = entry.keys?.get(kid);
    if (cached !== undefined) return cached;

    if (entry.inFlight === undefined && this.#now() - entry.lastAttemptAt >= this.#cooldownMs) {
      await this.#refresh(issuer, entry);
    } else if (entry.inFlight !== undefined) {
      await entry.inFlight.catch(() => undefined);
    }
    const refreshed = entry.keys?.get(kid);
    if (refreshed !== undefined) return refreshed;
    throw this.#unknownKid(issuer, entry, kid);
  }

  /** Drops everything cached (keys, discovery, remembered failures). */
  clear(): void {
    this.#issuers.clear();
  }

  #entryFor(issuer: string): IssuerEntry {
    let entry = this.#issuers.get(issuer);
    if (entry === undefined) {
      entry = {
        jwksUri: undefined,
        discoveredAt: -Infinity,
        keys: undefined,
        unusable: new Map(),
        fetchedAt: -Infinity,
        lastAttemptAt: -Infinity,
        failure: undefined,
        inFlight: undefined,
      };
      this.#issuers.set(issuer, entry);
    }
    return entry;
  }

  #refresh(issuer: string, entry: IssuerEntry): Promise<void> {
    if (entry.inFlight !== undefined) return entry.inFlight;
    const now = this.#now();
    if (entry.failure !== undefined && now - entry.failure.at < this.#failureBackoffMs) {
      const { error, at } = entry.failure;
      return Promise.reject(
        new GatewayError(
          error.code,
          `${error.message} (not asked again until ${new Date(at + this.#failureBackoffMs).toISOString()})`,
          { cause: error },
        ),
      );
    }
    entry.lastAttemptAt = now;
    const fetching = this.#fetchKeys(issuer, entry).then(
      ({ keys, unusable }) => {
        entry.keys = keys;
        entry.unusable = unusable;
        entry.fetchedAt = this.#now();
        entry.failure = undefined;
      },
      (err: unknown) => {
        const error =
          err instanceof GatewayError
            ? err
            : new GatewayError('UPSTREAM_UNAVAILABLE', `cannot fetch the keys of OIDC issuer ${issuer}: ${String(err)}`, { cause: err });
        entry.failure = { error, at: this.#now() };
        throw error;
      },
    );
    entry.inFlight = fetching.finally(() => {
      entry.inFlight = undefined;
    });
    return entry.inFlight;
  }

  async #fetchKeys(issuer: string, entry: IssuerEntry): Promise<{ keys: Map<string, IssuerKey>; unusable: Map<string, string> }> {
    if (entry.jwksUri === undefined || this.#now() - entry.discoveredAt >= this.#maxAgeMs) {
      entry.jwksUri = await this.#discover(issuer);
      entry.discoveredAt = this.#now();
    }
    const jwksUri = entry.jwksUri;
    const doc = await this.#getJson(issuer, jwksUri, 'JWKS');
    if (!isRecord(doc) || !Array.isArray(doc['keys'])) {
      throw upstream(issuer, `JWKS at ${jwksUri.href} is ${describeJson(doc)}, expected an object with a "keys" array`);
    }
    const list = doc['keys'] as unknown[];
    if (list.length > MAX_KEYS) {
      throw upstream(issuer, `JWKS at ${jwksUri.href} holds ${list.length} keys, more than the ${MAX_KEYS} accepted`);
    }
    const keys = new Map<string, IssuerKey>();
    const unusable = new Map<string, string>();
    const seen = new Set<string>();
    for (const jwk of list) {
      if (!isRecord(jwk) || typeof jwk['kid'] !== 'string' || jwk['kid'] === '') continue; // A kid-less key can never be selected.
      const kid = jwk['kid'];
      if (seen.has(kid)) {
        // Two keys under one kid: either could be meant, so neither is used.
        keys.delete(kid);
        unusable.set(kid, 'the JWKS holds more than one key with this kid');
        continue;
      }
      seen.add(kid);
      const imported = importKey(jwk, kid);
      if (typeof imported === 'string') unusable.set(kid, imported);
      else keys.set(kid, imported);
    }
    if (keys.size === 0) {
      const why = [...unusable].map(([kid, reason]) => `'${kid}': ${reason}`).join('; ');
      throw upstream(
        issuer,
        `JWKS at ${jwksUri.href} holds no usable RS256/ES256 signing key with a kid${why === '' ? '' : ` (${why})`}`,
      );
    }
    return { keys, unusable };
  }

  async #discover(issuer: string): Promise<URL> {
    const url = new URL(issuer.replace(/\/+$/, '') + DISCOVERY_PATH);
    const doc = await this.#getJson(issuer, url, 'discovery document');
    if (!isRecord(doc)) throw upstream(issuer, `discovery document at ${url.href} is ${describeJson(doc)}, expected a JSON object`);
    // OpenID Connect Discovery §4.3: the document must name exactly the issuer it was fetched for,
    // otherwise one issuer could serve keys in another's name.
    if (doc['issuer'] !== issuer) {
      throw upstream(issuer, `discovery document at ${url.href} names issuer ${showClaim(doc['issuer'])}, expected '${issuer}'`);
    }
    const jwksUri = doc['jwks_uri'];
    let parsed: URL | undefined;
    try {
      parsed = typeof jwksUri === 'string' ? new URL(jwksUri) : undefined;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || parsed.protocol !== 'https:') {
      throw upstream(issuer, `discovery document at ${url.href} has jwks_uri ${showClaim(jwksUri)}, expected an https:// URL`);
    }
    return parsed;
  }

  #getJson(issuer: string, url: URL, what: string): Promise<unknown> {
    const limit = this.#maxResponseBytes;
    const timeoutMs = this.#fetchTimeoutMs;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (reason: string, cause?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.destroy();
        reject(upstream(issuer, `${what} at ${url.href}: ${reason}`, cause));
      };
      const request = https.get(
        url,
        {
          // A fresh connection per fetch: fetches are minutes apart, and no idle socket outlives them.
          agent: false,
          ...(this.#ca === undefined ? {} : { ca: this.#ca }),
          headers: { accept: 'application/json' },
        },
        (response) => {
          response.on('error', (err) => fail(`the answer broke off: ${err.message}`, err));
          const status = response.statusCode ?? 0;
          if (status !== 200) {
            const location = response.headers.location;
            fail(
              `answered HTTP ${status}, expected 200` +
                (status >= 300 && status < 400 && location ? ` (redirect to ${showClaim(location)} not followed)` : ''),
            );
            return;
          }
          const declared = Number(response.headers['content-length']);
          if (Number.isFinite(declared) && declared > limit) {
            fail(`answer is ${declared} bytes, more than the ${limit}-byte limit`);
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > limit) fail(`answer is more than the ${limit}-byte limit`);
            else chunks.push(chunk);
          });
          response.on('end', () => {
            if (settled) return;
            let value: unknown;
            try {
              value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch (err) {
              fail(`answer is not JSON (${(err as Error).message})`, err);
              return;
            }
            settled = true;
            clearTimeout(timer);
            resolve(value);
          });
        },
      );
      request.on('error', (err) => fail(`request failed: ${err.message}`, err));
      const timer = setTimeout(() => fail(`no complete answer within ${timeoutMs} ms`), timeoutMs);
    });
  }

  #unknownKid(issuer: string, entry: IssuerEntry, kid: string): GatewayError {
    const reason = entry.unusable.get(kid);
    if (reason !== undefined) {
      return new GatewayError('UNAUTHENTICATED', `OIDC issuer ${issuer} has a key with kid ${showClaim(kid)} that cannot be used: ${reason}`);
    }
    const known = [...(entry.keys?.keys() ?? [])].map((k) => showClaim(k)).join(', ');
    const nextFetch = new Date(entry.lastAttemptAt + this.#cooldownMs).toISOString();
    return new GatewayError(
      'UNAUTHENTICATED',
      `OIDC issuer ${issuer} has no key with kid ${showClaim(kid)}; its JWKS (${entry.jwksUri?.href ?? 'not fetched'}) ` +
        `holds ${known === '' ? 'no keys' : known}; it is not fetched again for an unknown kid before ${nextFetch}`,
    );
  }
}

/** Returns the key, or a sentence saying why it cannot be used. */
function importKey(jwk: Record<string, unknown>, kid: string): IssuerKey | string {
  if (jwk['use'] !== undefined && jwk['use'] !== 'sig') return `its use is ${showClaim(jwk['use'])}, not 'sig'`;
  const privateMembers = PRIVATE_JWK_MEMBERS.filter((m) => m in jwk);
  if (privateMembers.length > 0) return `it carries private or symmetric key material ('${privateMembers.join("', '")}')`;
  const alg = jwk['alg'];
  if (alg !== undefined && typeof alg !== 'string') return `its alg is ${showClaim(alg)}, not a string`;
  const kty = jwk['kty'];
  if (kty === 'EC' && jwk['crv'] !== 'P-256') return `it is an EC key on curve ${showClaim(jwk['crv'])}; only P-256 (ES256) is accepted`;
  if (kty !== 'EC' && kty !== 'RSA') return `its kty is ${showClaim(kty)}; only RSA (RS256) and EC P-256 (ES256) are accepted`;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch (err) {
    return `it is not a valid ${kty} public key (${(err as Error).message})`;
  }
  // jose refuses shorter RSA keys at verification time; saying so here names the key, not the token.
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (kty === 'RSA' && (bits === undefined || bits < MIN_RSA_BITS)) return `it is a ${bits ?? 'unknown'}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`;
  return { kid, key, alg };
}

function upstream(issuer: string, message: string, cause?: unknown): GatewayError {
  return new GatewayError(
    'UPSTREAM_UNAVAILABLE',
    `cannot fetch the keys of OIDC issuer ${issuer}: ${message}`,
    cause === undefined ? undefined : { cause },
  );
}

function describeJson(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
