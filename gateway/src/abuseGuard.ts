import { GatewayError, toGatewayError } from './gatewayError.js';
import type { ClientIdentity } from './authenticator.js';
import { AuditLog, type AuditPath } from './auditLog.js';
import { RateLimits, addressKey } from './rateLimiter.js';
import { StreamQuota, type ReleaseStream } from './streamQuota.js';

export interface RateFigures {
  capacity: number;
  refillPerSec: number;
}

export interface AbuseLimits {
  /** Authentication attempts (any path) per source address (IPv6 by /64). */
  authPerAddress: RateFigures;
  /** Tunnel stream opens per token (a build's tokens count as one). */
  opensPerToken: RateFigures;
  /** Tunnel stream opens per source address. */
  opensPerAddress: RateFigures;
  /** Tunnel streams open at once per token. */
  maxStreamsPerToken: number;
  /** Keys remembered per limit (LRU): bounds memory whatever the number of addresses and tokens. */
  maxKeys: number;
}

// Generous enough for a CI runner behind one NAT address running several builds, each of which
// opens a burst of connections per step (buildx, compose); tight enough that a flood from one
// address or one leaked token is cut off within seconds.
export const DEFAULT_ABUSE_LIMITS: AbuseLimits = {
  authPerAddress: { capacity: 2000, refillPerSec: 500 },
  opensPerToken: { capacity: 1000, refillPerSec: 250 },
  opensPerAddress: { capacity: 4000, refillPerSec: 1000 },
  maxStreamsPerToken: 1024,
  maxKeys: 100_000,
};

type Limit = 'authPerAddress' | 'opensPerToken' | 'opensPerAddress';

export interface AuditContext {
  path: AuditPath;
  source: string | undefined;
  transport: string;
}

// Rate limits, stream quotas and the audit trail of authentication decisions, applied the same
// way on every path in: tunnels (HTTP/2, WebSocket, replica forwards), the build and admin APIs,
// the OIDC exchange and agent links.
export class AbuseGuard {
  private readonly limits: RateLimits<Limit>;
  private readonly quota: StreamQuota;

  constructor(
    limits: AbuseLimits,
    readonly audit: AuditLog,
    now?: () => number,
  ) {
    const spec = (f: RateFigures, description: string) => ({ ...f, description, maxKeys: limits.maxKeys });
    this.limits = new RateLimits<Limit>(
      {
        authPerAddress: spec(limits.authPerAddress, 'authentication attempts per source address'),
        opensPerToken: spec(limits.opensPerToken, 'tunnel stream opens per token'),
        opensPerAddress: spec(limits.opensPerAddress, 'tunnel stream opens per source address'),
      },
      now ? { now } : {},
    );
    this.quota = new StreamQuota({ maxStreamsPerKey: limits.maxStreamsPerToken, maxKeys: limits.maxKeys });
  }

  /** Before any token is looked at: one authentication attempt from this address. */
  admitAttempt(context: AuditContext): void {
    const decision = this.limits.take([{ limit: 'authPerAddress', key: addressKey(context.source) }]);
    if (!decision.allowed) {
      this.deny(context, decision.error);
      throw decision.error;
    }
  }

  /**
   * Runs an authentication step, charging the address first and recording the decision either
   * way. `describe` says who was let in, for the allow record.
   */
  async authenticate<T>(
    context: AuditContext,
    step: () => Promise<T>,
    describe: (value: T) => { subject?: string; project?: string; tokenId?: string; agentId?: string },
    options: { charge?: boolean } = {},
  ): Promise<T> {
    if (options.charge !== false) this.admitAttempt(context);
    let value: T;
    try {
      value = await step();
    } catch (err) {
      const error = toGatewayError(err);
      this.deny(context, error);
      throw error;
    }
    this.audit.auth({ ...context, decision: 'allow', ...describe(value) });
    return value;
  }

  /** A tunnel stream is about to open for this identity: per-token and per-address rates. Returns a no-op (for symmetry with holdStream). */
  openStream(identity: ClientIdentity, context: AuditContext): () => void {
    const decision = this.limits.take([
      { limit: 'opensPerToken', key: tokenKey(identity) },
      { limit: 'opensPerAddress', key: addressKey(context.source) },
    ]);
    if (!decision.allowed) {
      this.deny(context, decision.error, identity);
      throw decision.error;
    }
    return () => {};
  }

  /** One of the token's streams is open until the returned function is called (idempotent). */
  holdStream(identity: ClientIdentity, context: AuditContext): ReleaseStream {
    const release = this.quota.acquire(tokenKey(identity));
    if (release instanceof GatewayError) {
      this.deny(context, release, identity);
      throw release;
    }
    return release;
  }

  deny(context: AuditContext, error: GatewayError, identity?: ClientIdentity): void {
    this.audit.auth({
      ...context,
      decision: 'deny',
      code: error.code,
      reason: error.message,
      ...(identity ? { subject: identity.subject, project: identity.project, tokenId: identity.tokenId } : {}),
    });
  }
}

// A build's token is renewed (new jti) during long builds: its streams count under the build.
function tokenKey(identity: ClientIdentity): string {
  if (identity.buildId !== undefined) return `build:${identity.buildId}`;
  if (identity.tokenId !== undefined) return `jti:${identity.tokenId}`;
  return `sub:${identity.project}\u0000${identity.subject}`;
}
