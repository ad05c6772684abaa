// Verifies the OIDC token a CI job presents (GitHub Actions, GitLab, CircleCI, Buildkite) against
// a project's trust policies, before the gateway exchanges it for a short-lived Slipway token.
//
// The order matters for what an anonymous caller can make the gateway do: everything that needs
// no key (size, form, algorithm, issuer among the project's policies) is refused before any key
// lookup, so a token naming an arbitrary issuer never makes the gateway fetch anything.
import type { KeyObject } from 'node:crypto';
import { errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { GatewayError } from '../gatewayError.js';
import { auditValue, claimValue, isRecord, showClaim, type AuditValue } from './claimValue.js';
import type { OidcIssuerKeys } from './oidcIssuerKeys.js';
import { matchTrustPolicy, type TrustPolicy } from './trustPolicy.js';

export const OIDC_ALGORITHMS = ['RS256', 'ES256'] as const;
export type OidcAlgorithm = (typeof OIDC_ALGORITHMS)[number];

/** CI tokens carry many claims, but none comes near this. */
export const MAX_OIDC_TOKEN_BYTES = 16 * 1024;

/**
 * Claims copied into the identity for audit when present: the standard ones and those of the
 * supported CI providers that say which repository, ref, workflow and run a token came from.
 */
export const AUDIT_CLAIMS: readonly string[] = [
  'iss',
  'sub',
  'aud',
  'jti',
  // GitHub Actions
  'repository',
  'repository_id',
  'repository_owner',
  'repository_visibility',
  'ref',
  'ref_type',
  'sha',
  'workflow',
  'workflow_ref',
  'job_workflow_ref',
  'event_name',
  'environment',
  'actor',
  'run_id',
  'run_attempt',
  'head_ref',
  'base_ref',
  'runner_environment',
  // GitLab
  'project_path',
  'namespace_path',
  'pipeline_source',
  'pipeline_id',
  'user_login',
  // CircleCI
  'oidc.circleci.com/project-id',
  'oidc.circleci.com/pipeline-id',
  'oidc.circleci.com/vcs-origin',
  'oidc.circleci.com/vcs-ref',
  // Buildkite
  'organization_slug',
  'pipeline_slug',
  'build_number',
  'build_branch',
  'build_source',
];

export interface OidcVerifierOptions {
  issuerKeys: OidcIssuerKeys;
  /** Allowed clock skew for exp/nbf. Default 30 s. */
  clockToleranceSec?: number;
  /** Longer tokens are refused before parsing. Default 16 KiB. */
  maxTokenBytes?: number;
  /** Milliseconds since the epoch. Default Date.now; tests drive it. */
  now?: () => number;
}

export interface OidcIdentity {
  /** The token's `sub`. */
  subject: string;
  /** The policy that matched: the first in the order given. */
  policyId: string;
  /** The policy itself, for the scopes and lifetime of the Slipway token to hand out. */
  policy: TrustPolicy;
  /** False when the policy's `untrustedWhen` matched (e.g. a pull request from a fork). */
  trusted: boolean;
  /** The `untrustedWhen` claims that matched; empty when trusted. */
  untrustedBy: string[];
  /** When the CI token expires. */
  expiresAt: Date;
  /** Selected claims for the audit log: AUDIT_CLAIMS plus those the policy conditions. */
  claims: Record<string, AuditValue>;
}

const DEFAULT_CLOCK_TOLERANCE_SEC = 30;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

export class OidcVerifier {
  readonly #keys: OidcIssuerKeys;
  readonly #clockToleranceSec: number;
  readonly #maxTokenBytes: number;
  readonly #now: () => number;

  constructor(options: OidcVerifierOptions) {
    const tolerance = options.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC;
    const maxBytes = options.maxTokenBytes ?? MAX_OIDC_TOKEN_BYTES;
    const problems: string[] = [];
    if (!Number.isFinite(tolerance) || tolerance < 0) problems.push(`clockToleranceSec must be a finite number >= 0, got ${tolerance}`);
    if (!Number.isInteger(maxBytes) || maxBytes <= 0) problems.push(`maxTokenBytes must be a whole number > 0, got ${maxBytes}`);
    if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `OIDC verifier: ${problems.join('; ')}`);
    this.#keys = options.issuerKeys;
    this.#clockToleranceSec = tolerance;
    this.#maxTokenBytes = maxBytes;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Verifies `token` for `project` against `policies` (all configured policies may be given;
   * only those of `project` are used). Returns the identity of the first matching policy.
   * A token that cannot be verified: UNAUTHENTICATED. A verified token no policy accepts:
   * FORBIDDEN, naming each policy's mismatched claims. Issuer unreachable: UPSTREAM_UNAVAILABLE.
   */
  async verify(token: string, project: string, policies: readonly TrustPolicy[]): Promise<OidcIdentity> {
    if (typeof token !== 'string' || token === '') throw unauthenticated('OIDC token is empty');
    // First, so that a huge token costs nothing. Non-ASCII would make bytes exceed characters,
    // but it fails the base64url checks below anyway.
    if (token.length > this.#maxTokenBytes) {
      throw unauthenticated(`OIDC token is ${token.length} bytes, more than the ${this.#maxTokenBytes}-byte limit`);
    }
    const parts = token.split('.');
    if (parts.length !== 3) {
      throw unauthenticated(`malformed OIDC token: expected 3 dot-separated parts (JWS compact form), got ${parts.length}`);
    }
    const header = decodeSegment(parts[0]!, 'header');
    // Before the signature's form: an unsigned token (alg 'none', empty signature) is told so.
    const alg = header['alg'];
    if (!OIDC_ALGORITHMS.includes(alg as OidcAlgorithm)) throw unauthenticated(algorithmRefusal(alg));
    const kid = header['kid'];
    if (typeof kid !== 'string' || kid === '') {
      throw unauthenticated(`OIDC token header kid is ${showClaim(kid)}, expected the id of one of the issuer's keys`);
    }
    const unverified = decodeSegment(parts[1]!, 'payload');
    if (!BASE64URL.test(parts[2]!)) throw unauthenticated('malformed OIDC token: signature is missing or not base64url');

    // The unverified issuer only chooses which policies (and so which issuer's keys) to try; the
    // signature check below then holds the token to that issuer.
    const own = policies.filter((p) => p.project === project);
    if (own.length === 0) throw new GatewayError('FORBIDDEN', `project '${project}' trusts no OIDC issuer: it has no trust policy`);
    const issuer = unverified['iss'];
    const candidates = own.filter((p) => p.issuer === issuer);
    if (candidates.length === 0) {
      const trusted = [...new Set(own.map((p) => `'${p.issuer}'`))].join(', ');
      throw unauthenticated(`OIDC token issuer is ${showClaim(issuer)}; project '${project}' trusts tokens from ${trusted} only`);
    }
    const issuerUrl = issuer as string;

    const issuerKey = await this.#keys.getKey(issuerUrl, kid);
    const keyProblem = keyAlgorithmProblem(issuerKey.key, issuerKey.alg, alg as OidcAlgorithm);
    if (keyProblem !== undefined) throw unauthenticated(`OIDC issuer ${issuerUrl} key '${kid}' ${keyProblem}`);

    const audiences = [...new Set(candidates.map((p) => p.audience))];
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, issuerKey.key, {
        algorithms: [alg as string],
        issuer: issuerUrl,
        audience: audiences,
        clockTolerance: this.#clockToleranceSec,
        currentDate: new Date(this.#now()),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw this.#translate(err, issuerUrl, kid, audiences);
    }
    const subject = payload.sub;
    if (typeof subject !== 'string' || subject === '') throw unauthenticated(`OIDC token sub is ${showClaim(subject)}, expected a non-empty string`);

    const refusals: string[] = [];
    for (const policy of candidates) {
      const match = matchTrustPolicy(policy, payload);
      if (match.matched) {
        return {
          subject,
          policyId: policy.id,
          policy,
          trusted: match.trusted,
          untrustedBy: match.untrustedBy,
          expiresAt: new Date((payload.exp as number) * 1000),
          claims: auditClaims(payload, policy),
        };
      }
      refusals.push(`policy '${policy.id}': ${match.mismatches.join(', ')}`);
    }
    throw new GatewayError(
      'FORBIDDEN',
      `OIDC token from ${issuerUrl} for ${showClaim(subject)} matches no trust policy of project '${project}': ${refusals.join('; ')}`,
    );
  }

  #translate(err: unknown, issuer: string, kid: string, audiences: string[]): GatewayError {
    const now = new Date(this.#now()).toISOString();
    if (err instanceof joseErrors.JWTExpired) {
      return unauthenticated(`OIDC token expired at ${isoTime(err.payload.exp)}; it is now ${now}`, err);
    }
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      const { claim, reason, payload } = err;
      const expectedAud = audiences.map((a) => `'${a}'`).join(' or ');
      if (reason === 'missing') {
        const expected = claim === 'aud' ? expectedAud : claim === 'exp' ? 'an expiry time' : claim === 'sub' ? 'a subject' : 'one';
        return unauthenticated(`OIDC token has no '${claim}' claim; expected ${expected}`, err);
      }
      if (reason === 'invalid') return unauthenticated(`OIDC token '${claim}' claim is ${showClaim(payload[claim])}, expected a NumericDate (seconds)`, err);
      switch (claim) {
        case 'aud':
          return unauthenticated(`OIDC token audience is ${showClaim(payload.aud)}, expected ${expectedAud}`, err);
        case 'iss':
          return unauthenticated(`OIDC token issuer is ${showClaim(payload.iss)}, expected '${issuer}'`, err);
        case 'nbf':
          return unauthenticated(`OIDC token is not valid before ${isoTime(payload.nbf)}; it is now ${now}`, err);
        case 'iat':
          return unauthenticated(`OIDC token was issued at ${isoTime(payload.iat)}, in the future; it is now ${now}`, err);
        default:
          return unauthenticated(`OIDC token '${claim}' claim is ${showClaim(payload[claim])}, which failed validation`, err);
      }
    }
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
      return unauthenticated(`OIDC token signature does not verify with key '${kid}' of ${issuer}`, err);
    }
    // jose's remaining messages are fixed strings ("Invalid Compact JWS", ...): safe to repeat.
    if (err instanceof joseErrors.JOSEError || err instanceof TypeError) {
      return unauthenticated(`malformed OIDC token: ${err.message}`, err);
    }
    return new GatewayError('INTERNAL', `OIDC token verification failed unexpectedly: ${String(err)}`, { cause: err });
  }
}

function algorithmRefusal(alg: unknown): string {
  const expected = `expected ${OIDC_ALGORITHMS.join(' or ')}`;
  if (typeof alg === 'string' && alg.toLowerCase() === 'none') return `OIDC token is unsigned (alg 'none'); ${expected}`;
  if (typeof alg === 'string' && /^HS/i.test(alg)) {
    return `OIDC token algorithm ${showClaim(alg)} is symmetric and never accepted (an issuer's key is public); ${expected}`;
  }
  return `OIDC token algorithm ${showClaim(alg)} is not accepted; ${expected}`;
}

/** Why `key` cannot verify a token of `alg`, or undefined when it can. */
function keyAlgorithmProblem(key: KeyObject, jwkAlg: string | undefined, alg: OidcAlgorithm): string | undefined {
  if (jwkAlg !== undefined && jwkAlg !== alg) return `is for ${showClaim(jwkAlg)}, but the token says '${alg}'`;
  if (alg === 'ES256' && (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')) {
    return `is ${key.asymmetricKeyType ?? 'unknown'}, but the token says 'ES256' (EC P-256)`;
  }
  if (alg === 'RS256' && key.asymmetricKeyType !== 'rsa') return `is ${key.asymmetricKeyType ?? 'unknown'}, but the token says 'RS256' (RSA)`;
  return undefined;
}

function auditClaims(payload: JWTPayload, policy: TrustPolicy): Record<string, AuditValue> {
  const names = new Set([...AUDIT_CLAIMS, ...Object.keys(policy.conditions), ...Object.keys(policy.untrustedWhen ?? {})]);
  const claims: Record<string, AuditValue> = {};
  for (const name of names) {
    const raw = claimValue(payload, name);
    // An audience list is written as one string so the record stays flat.
    const value = auditValue(Array.isArray(raw) && raw.every((v) => typeof v === 'string') ? raw.join(' ') : raw);
    if (value !== undefined) claims[name] = value;
  }
  return claims;
}

function decodeSegment(segment: string, what: 'header' | 'payload'): Record<string, unknown> {
  if (!BASE64URL.test(segment)) throw unauthenticated(`malformed OIDC token: ${what} is empty or not base64url`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw unauthenticated(`malformed OIDC token: ${what} is not JSON`);
  }
  if (!isRecord(value)) throw unauthenticated(`malformed OIDC token: ${what} is ${showClaim(value)}, expected a JSON object`);
  return value;
}

function unauthenticated(message: string, cause?: unknown): GatewayError {
  return new GatewayError('UNAUTHENTICATED', message, cause === undefined ? undefined : { cause });
}

function isoTime(seconds: unknown): string {
  return typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : showClaim(seconds);
}
