// A project token for a CI job that has none stored: the job's OIDC token (proof of which
// repository and pipeline it is) goes to the gateway's POST /v1/oidc/exchange, and a trust policy
// of the project turns it into a short-lived Slipway token. Neither token is ever logged.
import type { Env, Logger } from '@slipway/proto';
import { CliError } from './cliError.js';
import { fetchCiOidcToken, type CiName, type CiOidcTokenOptions } from './ciOidcToken.js';
import { callGatewayApi, gatewayAnswerOf, type ApiCarrier } from './gatewayApi.js';

export interface OidcTokenExchangeOptions {
  project: string;
  /** Audience asked of the CI; the trust policy at the gateway names the same one. */
  audience: string;
  /** The environment the CI is detected from. */
  env: Env;
  log: Logger;
  timeoutMs: number;
  /** Told once, after the first exchange: which CI, which project (for the user, on stderr). */
  announce?: (line: string) => void;
  /** Gets the CI's token; replaceable in tests. */
  fetchCiToken?: (options: CiOidcTokenOptions) => ReturnType<typeof fetchCiOidcToken>;
  now?: () => number;
}

export interface ExchangedToken {
  token: string;
  project: string;
  scopes: string[];
  expiresAt: string;
  trusted: boolean;
}

export const CI_NAMES: Readonly<Record<CiName, string>> = {
  github: 'GitHub Actions',
  gitlab: 'GitLab CI',
  circleci: 'CircleCI',
  buildkite: 'Buildkite',
};

// Renewed this long before it expires (or a fifth of its life, if that is longer): a build
// created with it must not be refused for a token that died on the way.
const RENEW_MARGIN_MS = 30_000;

export class OidcTokenExchange {
  private current: { token: string; renewAtMs: number } | undefined;
  private exchanging: Promise<string> | undefined;
  private announced = false;
  private readonly now: () => number;

  constructor(private readonly options: OidcTokenExchangeOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * A Slipway token for the project, exchanged again once the last one is near its end. Only
   * builds are created with it (their own tokens are renewed by heartbeats), so a long-running
   * proxy asks here at each new build and exchanges only when that finds the token old.
   */
  token(api: ApiCarrier): Promise<string> {
    if (this.current && this.now() < this.current.renewAtMs) return Promise.resolve(this.current.token);
    this.exchanging ??= this.exchange(api).finally(() => {
      this.exchanging = undefined;
    });
    return this.exchanging;
  }

  private async exchange(api: ApiCarrier): Promise<string> {
    const { project, audience, env, log } = this.options;
    const ci = await (this.options.fetchCiToken ?? fetchCiOidcToken)({ audience, env, timeoutMs: this.options.timeoutMs });
    if (ci === undefined) {
      throw new CliError('CONFIG_INVALID', 'no project token is configured and no supported CI was detected; set SLIPWAY_TOKEN or run slipway login');
    }
    const ciName = CI_NAMES[ci.ci];
    const receivedAtMs = this.now();
    let answer: ExchangedToken;
    try {
      answer = await callGatewayApi<ExchangedToken>(api, {
        method: 'POST',
        path: '/v1/oidc/exchange',
        token: undefined,
        body: { project, token: ci.token },
        timeoutMs: this.options.timeoutMs,
        codes: { BAD_REQUEST: 'INVALID_REQUEST', UPSTREAM_UNAVAILABLE: 'ISSUER_UNAVAILABLE', NOT_FOUND: 'NOT_FOUND' },
      });
    } catch (err) {
      throw explain(err, ciName, project, audience);
    }
    if (typeof answer?.token !== 'string' || answer.token === '') {
      throw new CliError('TUNNEL_REFUSED', 'POST /v1/oidc/exchange answered without a token; is this a Slipway gateway?');
    }
    const lifeMs = lifetimeMs(answer, receivedAtMs);
    this.current = { token: answer.token, renewAtMs: receivedAtMs + lifeMs - Math.max(RENEW_MARGIN_MS, lifeMs / 5) };
    const fields = { ci: ci.ci, project, trusted: answer.trusted, expiresAt: answer.expiresAt };
    if (!this.announced) {
      this.announced = true;
      const untrusted = answer.trusted === false ? ' (the gateway treats this identity as untrusted)' : '';
      this.options.announce?.(`${ciName} detected: using its OIDC identity for project ${project}${untrusted}`);
      log.info('CI identity exchanged for a project token', fields);
    } else {
      log.info('CI identity exchanged again for a fresh project token', fields);
    }
    return answer.token;
  }
}

// The token's own iat/exp give its life without trusting that this clock agrees with the
// gateway's; the answer's expiresAt is the fallback.
function lifetimeMs(answer: ExchangedToken, receivedAtMs: number): number {
  try {
    const payload = JSON.parse(Buffer.from(answer.token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { iat?: unknown; exp?: unknown };
    if (typeof payload.iat === 'number' && typeof payload.exp === 'number' && payload.exp > payload.iat) return (payload.exp - payload.iat) * 1000;
  } catch {
    // not a JWT we can read: fall through
  }
  const expires = Date.parse(answer.expiresAt);
  return Number.isFinite(expires) ? Math.max(0, expires - receivedAtMs) : 0;
}

function explain(err: unknown, ciName: string, project: string, audience: string): unknown {
  const answer = gatewayAnswerOf(err);
  if (!(err instanceof CliError) || answer === undefined) return err;
  const what = `the gateway did not exchange this ${ciName} job's OIDC token for project ${project}`;
  if (answer.status === 404) {
    // An older gateway has no such route; a newer one without OIDC configured says so itself.
    const why = /^no route/.test(answer.message) ? 'this gateway does not offer OIDC exchange (no POST /v1/oidc/exchange)' : answer.message;
    return new CliError('NOT_FOUND', `${why}; use a project token (SLIPWAY_TOKEN) instead`);
  }
  switch (answer.wireCode) {
    case 'FORBIDDEN':
      return new CliError('FORBIDDEN', `${what}: ${answer.message}; see slipway trust list ${project}`);
    case 'UNAUTHENTICATED': {
      // An audience mismatch is fixed on this side as often as at the gateway.
      const hint = /\baud(ience)?\b/i.test(answer.message) ? ` (the CLI asked for audience '${audience}'; SLIPWAY_OIDC_AUDIENCE changes it)` : '';
      return new CliError('UNAUTHENTICATED', `${what}: ${answer.message}${hint}`);
    }
    default:
      return new CliError(err.code, `${what}: ${answer.message}`);
  }
}
