export { Gateway, type GatewayOptions } from './gateway.js';
export { GatewayError, type GatewayErrorCode, GatewayErrorCodes } from './gatewayError.js';
export { loadConfig, type GatewayConfig } from './config.js';
export { TokenVerifier, parseBearer, loadVerificationKeys } from './tokenVerifier.js';
export { TokenIssuer, generateSigningKey } from './tokenIssuer.js';
export { ensureDevPki, makeTestPki, type DevPki, type TestPki } from './devPki.js';
export { MemoryRoutingTable } from './routing/memoryRoutingTable.js';
export type * from './routing/routingTable.js';
export { BuildService } from './buildService.js';
export { loadSigningKey } from './tokenIssuer.js';
export { RedisRoutingTable, type RedisRoutingTableOptions } from './routing/redisRoutingTable.js';
export type { MemoryRoutingTableOptions } from './routing/memoryRoutingTable.js';
export { RateLimiter, RateLimits, addressKey, type RateLimiterOptions, type RateDecision, type RateLimitSpec, type RateCharge, type RateLimitsDecision } from './rateLimiter.js';
export { StreamQuota, streamQuotaKey, type StreamQuotaOptions, type ReleaseStream } from './streamQuota.js';
export { AuditLog, AuditPaths, redactSecrets, type AuditPath, type AuthDecision, type AuthAuditRecord, type AuditLogOptions } from './auditLog.js';
export { MemoryIdentityStore } from './identity/memoryIdentityStore.js';
export { RedisIdentityStore } from './identity/redisIdentityStore.js';
export { RevocationList } from './identity/revocationList.js';
export { ProjectAdmin } from './projectAdmin.js';
export type * from './identity/identityStore.js';
export {
  InstanceIdentityVerifier,
  MAX_INSTANCE_DOCUMENT_HEADER_CHARS,
  MAX_INSTANCE_SIGNATURE_HEADER_CHARS,
  type InstanceIdentityVerifierOptions,
  type VerifiedInstanceIdentity,
} from './instanceIdentityVerifier.js';
export {
  AgentAdmission,
  type AgentAdmissionOptions,
  type AgentAdmissionRequest,
  type AdmittedAgent,
  type FleetInstanceFacts,
  type InstanceLookup,
} from './agentAdmission.js';
export { OidcIssuerKeys, issuerUrlProblem, type OidcIssuerKeysOptions, type IssuerKey } from './oidc/oidcIssuerKeys.js';
export {
  validateTrustPolicies,
  validateTrustPolicy,
  trustPolicyProblems,
  matchTrustPolicy,
  claimPatternMatches,
  SUBJECT_CLAIMS,
  TOKEN_TTL_SEC_RANGE,
  type TrustPolicy,
  type TrustPolicyMatch,
} from './oidc/trustPolicy.js';
export {
  OidcVerifier,
  OIDC_ALGORITHMS,
  MAX_OIDC_TOKEN_BYTES,
  AUDIT_CLAIMS,
  type OidcVerifierOptions,
  type OidcIdentity,
  type OidcAlgorithm,
} from './oidc/oidcVerifier.js';
export { OidcExchange, type ExchangedToken } from './oidcExchange.js';
export { validateTrustPolicyInput } from './trustPolicyInput.js';
export { identityServices, type IdentityServices, type IdentityServicesOptions } from './identity/identityServices.js';
