import { GatewayError } from './gatewayError.js';
import type { StoredTrustPolicy } from './identity/identityStore.js';
import { validateTrustPolicy } from './oidc/trustPolicy.js';

/**
 * Checks a trust policy sent to the admin API. A bad policy there is the caller's mistake, so
 * the error is BAD_REQUEST (400) naming every problem, not the configuration error the
 * validator raises for policies read at startup.
 */
export function validateTrustPolicyInput(input: unknown): StoredTrustPolicy {
  try {
    return validateTrustPolicy(input) as unknown as StoredTrustPolicy;
  } catch (err) {
    throw new GatewayError('BAD_REQUEST', (err as Error).message, { cause: err });
  }
}
