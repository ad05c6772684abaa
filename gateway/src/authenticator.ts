import type { TokenVerifier } from './tokenVerifier.js';

// What the gateway needs of token verification, so tests and later identity sources can stand in
// for the jose-backed TokenVerifier.
export type Authenticator = Pick<TokenVerifier, 'verifyClient' | 'verifyAgent' | 'verifyReplica'>;
export type { ClientIdentity, AgentIdentity } from './tokenVerifier.js';
