// The shape of Slipway's bearer tokens, shared by the issuer (dev launcher, tests) and the verifier.
// Both kinds are ES256 JWTs; the audience alone says which kind a token is, so a token for one
// purpose can never be replayed for the other.

export const TOKEN_ALGORITHM = 'ES256';

/** Audience of tokens held by people and CI jobs driving builds through the CLI. */
export const CLIENT_AUDIENCE = 'slipway';
/** Audience of join tokens that build agents present when they register with the gateway. */
export const AGENT_AUDIENCE = 'slipway-agent';

/**
 * Audience of the tokens gateway replicas present to each other when one forwards a stream to
 * the replica that holds the builder's link. Signed with the build-token key all replicas share.
 */
export const REPLICA_AUDIENCE = 'slipway-replica';

/** Audience of tokens for the admin API: projects, their tokens and trust policies. */
export const ADMIN_AUDIENCE = 'slipway-admin';

/** Scopes a project token may carry: `build` (create builds, open tunnels) and `read` (read build status). */
export const PROJECT_SCOPES = ['build', 'read'] as const;

/** Scope a client token needs to open build tunnels. */
export const BUILD_SCOPE = 'build';

export const PROJECT_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
// Agent ids and fleet names travel in headers and logs: printable ASCII without spaces keeps them
// safe there while allowing hostnames, UUIDs and `name:index` forms.
export const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
export const FLEET_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Anything longer is refused before parsing: no legitimate Slipway token comes close. */
export const MAX_TOKEN_BYTES = 8192;

/** Payload of a client token (besides iss, aud, iat, nbf, exp, jti). */
export interface ClientTokenClaims {
  sub: string;
  project: string;
  /** Space-separated (OAuth style) when issued by Slipway; an array is accepted too. */
  scope: string | string[];
}

/** Build ids are gateway-minted UUIDs; the pattern keeps anything else out of keys and logs. */
export const BUILD_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * A build token is a client token (same audience, `build` scope) that also names one build: the
 * gateway mints it when a build is created, and tunnel streams carrying it go to the builders
 * acquired for that build and nowhere else.
 */
export interface BuildTokenClaims extends ClientTokenClaims {
  build: string;
}

/** Payload of an agent join token (besides iss, aud, iat, nbf, exp, jti). */
export interface AgentTokenClaims {
  /** The agent id. */
  sub: string;
  fleet: string;
}
