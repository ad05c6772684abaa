// A project's trust in CI identities: which issuer, which audience, and which claims a CI OIDC
// token must carry for the project to accept it in exchange for a Slipway token.
import { GatewayError } from '../gatewayError.js';
import { PROJECT_PATTERN } from '../tokenClaims.js';
import { claimText, claimValue, isRecord, showClaim } from './claimValue.js';
import { issuerUrlProblem } from './oidcIssuerKeys.js';

export interface TrustPolicy {
  /** Names the policy in results, audit records and refusals; unique among all policies. */
  id: string;
  project: string;
  /** Exact `iss` of the tokens (an https URL; its OIDC discovery document gives the keys). */
  issuer: string;
  /** Required `aud`: the token's audience (a string or one of an array) must equal it. */
  audience: string;
  /**
   * Claim (dot path for nested claims) → pattern; all must match. A pattern is an exact string
   * in which `*` stands for any run of characters other than `/` and `**` for any run at all.
   */
  conditions: Record<string, string>;
  /** Claim → pattern; if any of them matches, the token is accepted but marked untrusted. */
  untrustedWhen?: Record<string, string>;
  /** Scopes of the Slipway token handed out for a matching token. */
  scopes?: string[];
  /** Lifetime of that Slipway token. */
  tokenTtlSec?: number;
  /** Set to accept conditions that name no subject claim: every identity of the issuer may match. */
  allowAnySubject?: boolean;
}

export type TrustPolicyMatch =
  | {
      matched: true;
      trusted: boolean;
      /** The `untrustedWhen` claims that matched (empty when trusted). */
      untrustedBy: string[];
    }
  | {
      matched: false;
      /** One sentence per claim that did not match: the claim, its value and the pattern. */
      mismatches: string[];
    };

/**
 * Claims that say who the workload is (which repository, project or pipeline) rather than what
 * it is doing. A policy must condition at least one of them, or it trusts every customer of the
 * issuer: everyone on github.com can get a token from GitHub's issuer.
 */
export const SUBJECT_CLAIMS: readonly string[] = [
  'sub',
  // GitHub Actions
  'repository',
  'repository_id',
  'repository_owner',
  'repository_owner_id',
  'job_workflow_ref',
  'workflow_ref',
  // GitLab
  'project_path',
  'project_id',
  'namespace_path',
  'namespace_id',
  // CircleCI
  'oidc.circleci.com/project-id',
  // Buildkite
  'organization_slug',
  'organization_id',
  'pipeline_slug',
  'pipeline_id',
];

/** Claims the verifier checks itself; a condition on them would be either redundant or wrong. */
const RESERVED_CLAIMS: Readonly<Record<string, string>> = {
  iss: "use the policy's issuer",
  aud: "use the policy's audience",
  exp: 'token lifetimes are checked by the verifier',
  nbf: 'token lifetimes are checked by the verifier',
  iat: 'token lifetimes are checked by the verifier',
};

export const TOKEN_TTL_SEC_RANGE = { min: 60, max: 43_200 } as const;
const POLICY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const SCOPE_PATTERN = /^[\x21-\x7e]{1,64}$/;
const MAX_PATTERN_CHARS = 1024;
const MAX_CLAIM_PATH_CHARS = 256;
const POLICY_FIELDS = new Set([
  'id',
  'project',
  'issuer',
  'audience',
  'conditions',
  'untrustedWhen',
  'scopes',
  'tokenTtlSec',
  'allowAnySubject',
]);

/**
 * Validates a list of trust policies, naming every problem of every policy in one
 * CONFIG_INVALID error. Returns frozen copies. `source` names the input in the message.
 */
export function validateTrustPolicies(input: unknown, source = 'trust policies'): TrustPolicy[] {
  if (!Array.isArray(input)) throw new GatewayError('CONFIG_INVALID', `${source}: expected a list of policies, got ${describe(input)}`);
  const problems: string[] = [];
  const policies: TrustPolicy[] = [];
  const ids = new Map<string, number>();
  input.forEach((entry, index) => {
    const label = isRecord(entry) && typeof entry['id'] === 'string' ? `policy '${entry['id']}'` : `policy #${index}`;
    const own = trustPolicyProblems(entry);
    problems.push(...own.map((p) => `${label}: ${p}`));
    if (isRecord(entry) && typeof entry['id'] === 'string') {
      const first = ids.get(entry['id']);
      if (first !== undefined) problems.push(`${label}: id is also used by policy #${first}`);
      else ids.set(entry['id'], index);
    }
    if (own.length === 0) policies.push(freezePolicy(entry as unknown as TrustPolicy));
  });
  if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `${source}: ${problems.join('; ')}`);
  return policies;
}

/** Validates one policy; returns a frozen copy or throws CONFIG_INVALID naming every problem. */
export function validateTrustPolicy(input: unknown): TrustPolicy {
  const problems = trustPolicyProblems(input);
  if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `trust policy: ${problems.join('; ')}`);
  return freezePolicy(input as TrustPolicy);
}

/** Every problem of one policy, as sentences; empty when it is valid. */
export function trustPolicyProblems(input: unknown): string[] {
  if (!isRecord(input)) return [`expected an object, got ${describe(input)}`];
  const problems: string[] = [];
  for (const field of Object.keys(input)) {
    if (!POLICY_FIELDS.has(field)) problems.push(`unknown field ${showClaim(field)} (known: ${[...POLICY_FIELDS].join(', ')})`);
  }
  const { id, project, issuer, audience, conditions, untrustedWhen, scopes, tokenTtlSec, allowAnySubject } = input;

  if (typeof id !== 'string' || !POLICY_ID_PATTERN.test(id)) problems.push(`id is ${showClaim(id)}, expected a name matching ${POLICY_ID_PATTERN.source}`);
  if (typeof project !== 'string' || !PROJECT_PATTERN.test(project)) {
    problems.push(`project is ${showClaim(project)}, expected a project name matching ${PROJECT_PATTERN.source}`);
  }
  const issuerProblem = issuerUrlProblem(issuer);
  if (issuerProblem !== undefined) problems.push(issuerProblem);
  if (typeof audience !== 'string' || audience.trim() === '') problems.push(`audience is ${showClaim(audience)}, expected a non-empty string`);
  if (allowAnySubject !== undefined && typeof allowAnySubject !== 'boolean') {
    problems.push(`allowAnySubject is ${showClaim(allowAnySubject)}, expected true or false`);
  }

  if (!isRecord(conditions)) {
    problems.push(`conditions is ${describe(conditions)}, expected an object of claim → pattern`);
  } else {
    problems.push(...conditionProblems('conditions', conditions));
    const identifying = Object.entries(conditions).filter(
      ([claim, pattern]) => SUBJECT_CLAIMS.includes(claim) && typeof pattern === 'string' && !/^\*+$/.test(pattern),
    );
    if (identifying.length === 0 && allowAnySubject !== true) {
      problems.push(
        (Object.keys(conditions).length === 0 ? 'conditions is empty' : 'conditions name no subject claim') +
          `, so every identity the issuer vouches for would be trusted; add a condition on one of ` +
          `${SUBJECT_CLAIMS.join(', ')} (not just '*'), or set allowAnySubject: true if that is really meant`,
      );
    }
  }
  if (untrustedWhen !== undefined) {
    if (!isRecord(untrustedWhen)) problems.push(`untrustedWhen is ${describe(untrustedWhen)}, expected an object of claim → pattern`);
    else problems.push(...conditionProblems('untrustedWhen', untrustedWhen));
  }
  if (scopes !== undefined) {
    if (!Array.isArray(scopes) || scopes.length === 0) problems.push(`scopes is ${describe(scopes)}, expected a non-empty list of scope names`);
    else {
      scopes.forEach((scope, i) => {
        if (typeof scope !== 'string' || !SCOPE_PATTERN.test(scope)) problems.push(`scopes[${i}] is ${showClaim(scope)}, expected a scope name without spaces`);
      });
    }
  }
  if (tokenTtlSec !== undefined) {
    const { min, max } = TOKEN_TTL_SEC_RANGE;
    if (typeof tokenTtlSec !== 'number' || !Number.isInteger(tokenTtlSec) || tokenTtlSec < min || tokenTtlSec > max) {
      problems.push(`tokenTtlSec is ${showClaim(tokenTtlSec)}, expected a whole number of seconds from ${min} to ${max}`);
    }
  }
  return problems;
}

/**
 * Matches the claims of a verified token against a policy: issuer, audience, every condition,
 * then `untrustedWhen`. Mismatches name the claim, its value (bounded) and the pattern, never
 * the token itself.
 */
export function matchTrustPolicy(policy: TrustPolicy, claims: Record<string, unknown>): TrustPolicyMatch {
  const mismatches: string[] = [];
  if (claims['iss'] !== policy.issuer) mismatches.push(`iss is ${showClaim(claims['iss'])}, expected '${policy.issuer}'`);
  const aud = claims['aud'];
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(policy.audience)) mismatches.push(`aud is ${showClaim(aud)}, expected '${policy.audience}'`);
  for (const [claim, pattern] of Object.entries(policy.conditions)) {
    const value = claimValue(claims, claim);
    const text = claimText(value);
    if (text === undefined) {
      mismatches.push(`${claim} is ${value === undefined ? 'missing' : `${showClaim(value)}, not a string`}, expected '${pattern}'`);
    } else if (!claimPatternMatches(pattern, text)) {
      mismatches.push(`${claim} is ${showClaim(text)}, expected '${pattern}'`);
    }
  }
  if (mismatches.length > 0) return { matched: false, mismatches };

  const untrustedBy = Object.entries(policy.untrustedWhen ?? {})
    .filter(([claim, pattern]) => {
      const text = claimText(claimValue(claims, claim));
      return text !== undefined && claimPatternMatches(pattern, text);
    })
    .map(([claim]) => claim);
  return { matched: true, trusted: untrustedBy.length === 0, untrustedBy };
}

/**
 * Whether `value` matches `pattern`: literal characters match themselves, `*` any run (maybe
 * empty) of characters other than `/`, `**` any run of characters at all, `/` included.
 */
export function claimPatternMatches(pattern: string, value: string): boolean {
  // A set of reachable positions, advanced one pattern token at a time: linear in the value for
  // each token, so no pattern can make matching slow (a backtracking regex could be).
  let reachable = new Uint8Array(value.length + 1);
  reachable[0] = 1;
  for (const token of patternTokens(pattern)) {
    const next = new Uint8Array(value.length + 1);
    if (token === '*' || token === '**') {
      let open = false;
      for (let j = 0; j <= value.length; j++) {
        if (j > 0 && token === '*' && value[j - 1] === '/') open = false;
        if (reachable[j]) open = true;
        if (open) next[j] = 1;
      }
    } else {
      for (let i = 0; i + token.length <= value.length; i++) {
        if (reachable[i] && value.startsWith(token, i)) next[i + token.length] = 1;
      }
    }
    reachable = next;
  }
  return reachable[value.length] === 1;
}

/** Splits a pattern into literals and wildcards (`*`, `**`); assumes a validated pattern. */
function patternTokens(pattern: string): string[] {
  return pattern.split(/(\*\*|\*)/).filter((t) => t !== '');
}

function conditionProblems(field: string, conditions: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const [claim, pattern] of Object.entries(conditions)) {
    const name = `${field}[${showClaim(claim)}]`;
    if (claim === '' || claim.length > MAX_CLAIM_PATH_CHARS || claim.split('.').some((s) => s === '')) {
      problems.push(`${name}: a claim name must be a non-empty dot path of at most ${MAX_CLAIM_PATH_CHARS} characters`);
    } else if (Object.hasOwn(RESERVED_CLAIMS, claim)) {
      problems.push(`${name}: '${claim}' cannot be a condition (${RESERVED_CLAIMS[claim]})`);
    }
    if (typeof pattern !== 'string' || pattern === '') {
      problems.push(`${name} is ${showClaim(pattern)}, expected a non-empty pattern string`);
    } else if (pattern.length > MAX_PATTERN_CHARS) {
      problems.push(`${name} is ${pattern.length} characters long, more than ${MAX_PATTERN_CHARS}`);
    } else if (/\*{3,}/.test(pattern)) {
      problems.push(`${name} is ${showClaim(pattern)}: use '*' for one path segment or '**' for anything, not three or more`);
    } else if (/[\u0000-\u001f\u007f]/.test(pattern)) {
      problems.push(`${name} contains control characters`);
    }
  }
  return problems;
}

function freezePolicy(policy: TrustPolicy): TrustPolicy {
  return Object.freeze({
    id: policy.id,
    project: policy.project,
    issuer: policy.issuer,
    audience: policy.audience,
    conditions: Object.freeze({ ...policy.conditions }),
    ...(policy.untrustedWhen === undefined ? {} : { untrustedWhen: Object.freeze({ ...policy.untrustedWhen }) }),
    ...(policy.scopes === undefined ? {} : { scopes: Object.freeze([...policy.scopes]) as string[] }),
    ...(policy.tokenTtlSec === undefined ? {} : { tokenTtlSec: policy.tokenTtlSec }),
    ...(policy.allowAnySubject === undefined ? {} : { allowAnySubject: policy.allowAnySubject }),
  });
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  return typeof value === 'object' ? 'an object' : showClaim(value);
}
