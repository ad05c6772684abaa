import type { Authenticator, ClientIdentity } from './authenticator.js';

export interface VerifiedTokenCacheOptions {
  maxEntries: number;
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

  async verifyClient(token: string): Promise<ClientIdentity> {
    const now = this.now();
    const hit = this.entries.get(token);
    if (hit && hit.validUntilMs > now) return hit.identity;
    if (hit) this.entries.delete(token);
    const identity = await this.inner.verifyClient(token);
    if (this.entries.size >= this.options.maxEntries) {
      // Map iteration order is insertion order: the first key is the oldest entry.
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(token, { identity, validUntilMs: Math.min(identity.expiresAt.getTime(), now + this.options.maxAgeMs) });
    return identity;
  }

  verifyAgent(token: string): ReturnType<Authenticator['verifyAgent']> {
    return this.inner.verifyAgent(token);
  }

  verifyReplica(token: string): ReturnType<Authenticator['verifyReplica']> {
    return this.inner.verifyReplica(token);
  }
}
