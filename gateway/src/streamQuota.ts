import { GatewayError } from './gatewayError.js';
import type { ClientIdentity } from './authenticator.js';

export interface StreamQuotaOptions {
  /** Tunnel streams one token may hold open at once. */
  maxStreamsPerKey: number;
  /** Tokens with open streams tracked at most; a new token beyond it is refused, never another forgotten. */
  maxKeys: number;
}

/** Ends the hold on one stream's slot. Calling it again does nothing. */
export type ReleaseStream = () => void;

/**
 * The key a token's streams are counted under: its `jti` when it has one, so two tokens of one
 * subject are counted apart; otherwise its subject within its project.
 */
export function streamQuotaKey(identity: Pick<ClientIdentity, 'tokenId' | 'subject' | 'project'>): string {
  // JSON keeps the two parts apart whatever characters they hold, so no subject can pose as another pair.
  return identity.tokenId !== undefined ? `jti:${identity.tokenId}` : `sub:${JSON.stringify([identity.subject, identity.project])}`;
}

// Concurrent tunnel streams per token. Unlike a rate limit, a count cannot be forgotten safely:
// dropping a key would let its holder open a whole new quota's worth while the old streams run.
// So the table holds only keys with open streams (a key leaves with its last release) and, when
// full, refuses new keys rather than evicting one.
export class StreamQuota {
  readonly maxStreamsPerKey: number;
  readonly maxKeys: number;
  readonly #open = new Map<string, number>();

  constructor(options: StreamQuotaOptions) {
    const problems: string[] = [];
    if (!(Number.isSafeInteger(options.maxStreamsPerKey) && options.maxStreamsPerKey >= 1)) problems.push(`maxStreamsPerKey must be an integer >= 1, got ${options.maxStreamsPerKey}`);
    if (!(Number.isSafeInteger(options.maxKeys) && options.maxKeys >= 1)) problems.push(`maxKeys must be an integer >= 1, got ${options.maxKeys}`);
    if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `stream quota: ${problems.join('; ')}`);
    this.maxStreamsPerKey = options.maxStreamsPerKey;
    this.maxKeys = options.maxKeys;
  }

  /** Takes a slot for one stream of `key`: the function that gives it back, or why not (RATE_LIMITED). */
  acquire(key: string): ReleaseStream | GatewayError {
    const open = this.#open.get(key) ?? 0;
    if (open >= this.maxStreamsPerKey) {
      return new GatewayError(
        'RATE_LIMITED',
        `too many concurrent tunnel streams for this token: ${open} open, limit ${this.maxStreamsPerKey} per token; retry when one of them has ended`,
      );
    }
    if (open === 0 && this.#open.size >= this.maxKeys) {
      return new GatewayError(
        'RATE_LIMITED',
        `the gateway holds open streams for ${this.#open.size} tokens, its limit ${this.maxKeys}; retry when some have ended`,
      );
    }
    this.#open.set(key, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(key) ?? 1) - 1;
      if (left > 0) this.#open.set(key, left);
      else this.#open.delete(key);
    };
  }

  /** Streams `key` holds open now. */
  active(key: string): number {
    return this.#open.get(key) ?? 0;
  }

  /** Keys with at least one open stream. */
  get size(): number {
    return this.#open.size;
  }
}
