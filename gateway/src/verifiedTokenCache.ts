import type { Authenticator, ClientIdentity } from './authenticator.js';
import { GatewayError } from './gatewayError.js';
import { BUILD_SCOPE } from './tokenClaims.js';

function requireScope(identity: ClientIdentity, scope: string | null): ClientIdentity {
  if (scope !== null && !identity.scopes.includes(scope)) {
    throw new GatewayError(
      'FORBIDDEN',
      identity.scopes.length === 0 ? `token has no scopes; '${scope}' is required` : `token scopes are '${identity.scopes.join(' ')}', expected them to include '${scope}'`,
    );
  }
  return identity;
}

export interface VerifiedTokenCacheOptions {
  maxEntries: number;
  /** Revoked token ids: checked on every use, cached or not. */
  isRevoked?: (tokenId: string | undefined) => boolean;
  // A verified token is trusted again without a signature check for at most this long (and never
  // past its own expiry), which bounds how long a revocation could go unnoticed once revocation
  // exists.
  maxAgeMs: number;
  now?: () => number;
}

// Every tunnel stream carries the client's token, and a build opens many streams with the same
// one. An ES256 signature check costs a few hundred microseconds, which is most of what the
// gateway adds to opening a stream, so successful client verifications are remembered briefly.
// Failures are never cached: each bad token is checked, and answered, on its own.
export class VerifiedTokenCache implements Authenticator {
  private readonly entries = new Map<string, { identity: ClientIdentity; validUntilMs: number }>();
  private readonly now: () => number;

  constructor(
    private readonly inner: Authenticator,
    private readonly options: VerifiedTokenCacheOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  // Scope is checked here rather than by the inner verifier, so that one cached verification
  // serves paths that need different scopes.
  async verifyClient(token: string, requiredScope: string | null = BUILD_SCOPE): Promise<ClientIdentity> {
    return requireScope(await this.verified(token), requiredScope);
  }

  private async verified(token: string): Promise<ClientIdentity> {
    const now = this.now();
    const hit = this.entries.get(token);
    if (hit && hit.validUntilMs > now) return this.notRevoked(hit.identity);
    if (hit) this.entries.delete(token);
    const identity = this.notRevoked(await this.inner.verifyClient(token, null));
    if (this.entries.size >= this.options.maxEntries) {
      // Map iteration order is insertion order: the first key is the oldest entry.
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(token, { identity, validUntilMs: Math.min(identity.expiresAt.getTime(), now + this.options.maxAgeMs) });
    return identity;
  }

  private notRevoked(identity: ClientIdentity): ClientIdentity {
    const isRevoked = this.options.isRevoked;
    if (isRevoked) {
      if (isRevoked(identity.tokenId)) throw new GatewayError('UNAUTHENTICATED', `token ${identity.tokenId} has been revoked`);
      if (isRevoked(identity.parentTokenId)) {
        throw new GatewayError('UNAUTHENTICATED', `the project token this build was created with (${identity.parentTokenId}) has been revoked`);
      }
    }
    return identity;
  }

  verifyAgent(token: string): ReturnType<Authenticator['verifyAgent']> {
    return this.inner.verifyAgent(token);
  }

  verifyReplica(token: string): ReturnType<Authenticator['verifyReplica']> {
    return this.inner.verifyReplica(token);
  }
}
