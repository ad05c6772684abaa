import { randomUUID } from 'node:crypto';
import type { Logger } from '@slipway/proto';
import { GatewayError } from './gatewayError.js';
import type { IdentityStore } from './identity/identityStore.js';
import type { OidcVerifier } from './oidc/oidcVerifier.js';
import type { TrustPolicy } from './oidc/trustPolicy.js';
import type { TokenIssuer } from './tokenIssuer.js';
import { PROJECT_PATTERN } from './tokenClaims.js';

export interface OidcExchangeOptions {
  store: IdentityStore;
  verifier: OidcVerifier;
  issuer: TokenIssuer;
  log: Logger;
  /** Life of the Slipway token handed out, unless the policy says otherwise. */
  defaultTokenTtlSec: number;
  now?: () => number;
}

export interface ExchangedToken {
  token: string;
  project: string;
  scopes: string[];
  expiresAt: string;
  /** False when the policy marks this identity untrusted (e.g. a fork's pull request). */
  trusted: boolean;
}

// A CI job's OIDC token in, a short-lived Slipway project token out, when one of the project's
// trust policies accepts the CI identity. The token carries the CI subject (for the audit log) and
// whether the identity is trusted, which decides whether its builds may touch the project's cache.
export class OidcExchange {
  private readonly now: () => number;

  constructor(private readonly options: OidcExchangeOptions) {
    this.now = options.now ?? Date.now;
  }

  async exchange(input: unknown): Promise<ExchangedToken & { subject: string; policyId: string }> {
    const body = typeof input === 'object' && input !== null && !Array.isArray(input) ? (input as Record<string, unknown>) : {};
    const problems: string[] = [];
    const project = body['project'];
    const token = body['token'];
    if (typeof project !== 'string' || !PROJECT_PATTERN.test(project)) problems.push(`project must match ${PROJECT_PATTERN.source}; got ${JSON.stringify(project)?.slice(0, 80)}`);
    if (typeof token !== 'string' || token === '') problems.push('token must be the CI job\'s OIDC token (a JWT)');
    if (problems.length > 0) throw new GatewayError('BAD_REQUEST', `invalid exchange request: ${problems.join('; ')}`);
    const policies = (await this.options.store.listTrustPolicies(project as string)) as unknown as TrustPolicy[];
    if (policies.length === 0) {
      // The same answer whether the project is missing or trusts no CI: nothing to learn by probing.
      throw new GatewayError('FORBIDDEN', `project '${project as string}' trusts no CI identity`);
    }
    const identity = await this.options.verifier.verify(token as string, project as string, policies);
    const scopes = identity.policy.scopes && identity.policy.scopes.length > 0 ? [...identity.policy.scopes] : ['build'];
    const ttlSec = identity.policy.tokenTtlSec ?? this.options.defaultTokenTtlSec;
    // Never outlive the CI token that vouched for it by much: a job's identity ends with the job.
    const ciRemainingSec = Math.floor((identity.expiresAt.getTime() - this.now()) / 1000);
    const lifeSec = Math.max(60, Math.min(ttlSec, Math.max(ciRemainingSec, 60) + 300));
    const slipwayToken = await this.options.issuer.issueProjectToken({
      project: project as string,
      subject: `oidc:${identity.subject}`.slice(0, 256),
      scopes,
      ttlSec: lifeSec,
      tokenId: randomUUID(),
      untrusted: !identity.trusted,
    });
    this.options.log.info('CI identity exchanged', { project: project as string, policyId: identity.policyId, subject: identity.subject, trusted: identity.trusted });
    return {
      token: slipwayToken,
      project: project as string,
      scopes,
      expiresAt: new Date(this.now() + lifeSec * 1000).toISOString(),
      trusted: identity.trusted,
      subject: identity.subject,
      policyId: identity.policyId,
    };
  }
}
