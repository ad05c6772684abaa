import type { JWK } from 'jose';
import type { Logger } from '@slipway/proto';
import { OidcExchange } from '../oidcExchange.js';
import { OidcIssuerKeys, type OidcIssuerKeysOptions } from '../oidc/oidcIssuerKeys.js';
import { OidcVerifier } from '../oidc/oidcVerifier.js';
import { ProjectAdmin } from '../projectAdmin.js';
import type { TokenIssuer } from '../tokenIssuer.js';
import { validateTrustPolicyInput } from '../trustPolicyInput.js';
import type { IdentityStore } from './identityStore.js';
import { RevocationList } from './revocationList.js';

/** What the gateway serves identity with: the admin API, revocations, the OIDC exchange. */
export interface IdentityServices {
  admin: ProjectAdmin;
  revocations: RevocationList;
  verifyAdmin: (token: string) => Promise<{ subject: string }>;
  /** Public halves of the keys this gateway signs with (published at /.well-known/jwks.json). */
  publicKeys: () => JWK[];
  oidc?: OidcExchange;
  /** Whether a project runs builds from untrusted CI identities on throwaway builders. */
  isolateUntrusted?: (project: string) => Promise<boolean>;
}

export interface IdentityServicesOptions {
  store: IdentityStore;
  issuer: TokenIssuer;
  verifyAdmin: (token: string) => Promise<{ subject: string }>;
  publicKeys: () => JWK[];
  log: Logger;
  revocationRefreshMs: number;
  maxTokenTtlSec: number;
  oidcTokenTtlSec: number;
  oidcIssuerKeys?: OidcIssuerKeysOptions;
}

// The identity pieces wired the same way for the gateway program, `npm start` and the tests.
// The revocation list is read once before it is handed out: a replica must not start serving with
// an empty list, or a revoked token would pass until the first refresh.
export async function identityServices(options: IdentityServicesOptions): Promise<IdentityServices> {
  const { store, issuer, log } = options;
  const revocations = new RevocationList({ store, refreshIntervalMs: options.revocationRefreshMs, log });
  await revocations.refresh();
  return {
    admin: new ProjectAdmin({ store, issuer, revocations, log, maxTokenTtlSec: options.maxTokenTtlSec, validateTrustPolicy: validateTrustPolicyInput }),
    revocations,
    verifyAdmin: options.verifyAdmin,
    publicKeys: options.publicKeys,
    oidc: new OidcExchange({
      store,
      verifier: new OidcVerifier({ issuerKeys: new OidcIssuerKeys(options.oidcIssuerKeys ?? {}) }),
      issuer,
      log,
      defaultTokenTtlSec: options.oidcTokenTtlSec,
    }),
    isolateUntrusted: async (project) => (await store.getProject(project))?.isolateUntrusted ?? false,
  };
}
