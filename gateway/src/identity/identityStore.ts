// Who may build what: projects, the tokens issued for them, revocations, and the CI identities
// (OIDC trust policies) a project accepts. Two implementations pass the same contract tests:
// RedisIdentityStore (shared by replicas) and MemoryIdentityStore (`npm start`, optionally
// persisted to a JSON file).

export interface ProjectRecord {
  name: string;
  createdAtMs: number;
  /** Builds from untrusted CI identities (e.g. fork pull requests) run on a throwaway builder without the project's cache. */
  isolateUntrusted: boolean;
}

export interface TokenRecord {
  /** The token's `jti`. */
  id: string;
  project: string;
  subject: string;
  scopes: string[];
  description: string;
  createdAtMs: number;
  expiresAtMs: number;
  revokedAtMs: number | undefined;
}

/** A stored trust policy: opaque here, validated by the OIDC module before it is stored. */
export interface StoredTrustPolicy {
  id: string;
  project: string;
  issuer: string;
  [key: string]: unknown;
}

export interface IdentityStore {
  /** Creates a project; false when it already exists. */
  createProject(project: ProjectRecord): Promise<boolean>;
  getProject(name: string): Promise<ProjectRecord | undefined>;
  listProjects(): Promise<ProjectRecord[]>;
  /** Deletes the project, revokes every token issued for it and drops its trust policies. False when absent. */
  deleteProject(name: string, nowMs: number): Promise<boolean>;

  recordToken(token: TokenRecord): Promise<void>;
  listTokens(project: string): Promise<TokenRecord[]>;
  getToken(id: string): Promise<TokenRecord | undefined>;
  /** Revokes a token by id (idempotent). The revocation is kept until the token would have expired anyway. */
  revokeToken(id: string, nowMs: number, expiresAtMs: number): Promise<void>;
  /** Ids revoked and not yet expired. */
  listRevoked(nowMs: number): Promise<string[]>;

  addTrustPolicy(policy: StoredTrustPolicy): Promise<void>;
  listTrustPolicies(project: string): Promise<StoredTrustPolicy[]>;
  /** False when there was no such policy. */
  removeTrustPolicy(project: string, id: string): Promise<boolean>;

  close(): Promise<void>;
}
