import type { Logger } from '@slipway/proto';
import { toGatewayError } from '../gatewayError.js';
import type { IdentityStore } from './identityStore.js';

export interface RevocationListOptions {
  store: IdentityStore;
  /** How often the mirror is refreshed: the longest a revocation made on another replica goes unseen here. */
  refreshIntervalMs: number;
  log: Logger;
  now?: () => number;
}

// Revoked token ids, mirrored in memory: checking every stream open against Redis would put a
// round trip on the hot path, and revocations are rare and small (kept only until the token would
// have expired). A revocation made through this replica applies here at once; one made through
// another replica applies within one refresh interval.
export class RevocationList {
  private ids = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => number;
  private refreshing: Promise<void> | undefined;

  constructor(private readonly options: RevocationListOptions) {
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => void this.refresh(), options.refreshIntervalMs);
    this.timer.unref();
  }

  isRevoked(tokenId: string | undefined): boolean {
    return tokenId !== undefined && this.ids.has(tokenId);
  }

  /** Records a revocation made here, before the store has been read back. */
  add(tokenId: string): void {
    this.ids.add(tokenId);
  }

  refresh(): Promise<void> {
    this.refreshing ??= this.options.store
      .listRevoked(this.now())
      .then(
        (ids) => {
          this.ids = new Set(ids);
        },
        (err: unknown) => this.options.log.warn('cannot refresh revoked tokens; keeping the last list', { reason: toGatewayError(err).message }),
      )
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  close(): void {
    clearInterval(this.timer);
  }
}
