import { randomUUID } from 'node:crypto';
import type { Logger } from '@slipway/proto';
import { GatewayError } from './gatewayError.js';
import type { IdentityStore, ProjectRecord, StoredTrustPolicy, TokenRecord } from './identity/identityStore.js';
import type { RevocationList } from './identity/revocationList.js';
import type { TokenIssuer } from './tokenIssuer.js';
import { PROJECT_PATTERN, PROJECT_SCOPES } from './tokenClaims.js';

export interface ProjectAdminOptions {
  store: IdentityStore;
  issuer: TokenIssuer;
  revocations: RevocationList;
  log: Logger;
  /** Longest life an issued project token may have. */
  maxTokenTtlSec: number;
  /**
   * Checks a trust policy and returns it normalised, or throws naming every problem (the OIDC
   * module's validator). Absent: trust policies cannot be managed.
   */
  validateTrustPolicy?: (input: unknown, project: string) => StoredTrustPolicy;
  now?: () => number;
}

export interface IssuedToken {
  id: string;
  token: string;
  project: string;
  scopes: string[];
  expiresAt: string;
}

// The admin API's logic: projects, their tokens, and the CI identities they trust. Every input is
// checked and every problem named at once; the token itself is shown only in the answer to its
// creation (the store keeps its id and metadata, never the token).
export class ProjectAdmin {
  private readonly now: () => number;

  constructor(private readonly options: ProjectAdminOptions) {
    this.now = options.now ?? Date.now;
  }

  async createProject(input: unknown): Promise<ProjectRecord> {
    const body = object(input);
    const problems: string[] = [];
    const name = body['name'];
    if (typeof name !== 'string' || !PROJECT_PATTERN.test(name)) {
      problems.push(`name must match ${PROJECT_PATTERN.source}; got ${JSON.stringify(name)?.slice(0, 80)}`);
    }
    const isolate = body['isolateUntrusted'] ?? false;
    if (typeof isolate !== 'boolean') problems.push(`isolateUntrusted must be true or false; got ${JSON.stringify(isolate)?.slice(0, 40)}`);
    unknownFields(body, ['name', 'isolateUntrusted'], problems);
    if (problems.length > 0) throw new GatewayError('BAD_REQUEST', `invalid project: ${problems.join('; ')}`);
    const project: ProjectRecord = { name: name as string, createdAtMs: this.now(), isolateUntrusted: isolate as boolean };
    if (!(await this.options.store.createProject(project))) throw new GatewayError('CONFLICT', `project '${project.name}' already exists`);
    this.options.log.info('project created', { project: project.name });
    return project;
  }

  listProjects(): Promise<ProjectRecord[]> {
    return this.options.store.listProjects();
  }

  async getProject(name: string): Promise<ProjectRecord> {
    const project = await this.options.store.getProject(name);
    if (!project) throw new GatewayError('NOT_FOUND', `no project named '${name.slice(0, 64)}'`);
    return project;
  }

  async deleteProject(name: string): Promise<void> {
    const tokens = await this.options.store.listTokens(name);
    if (!(await this.options.store.deleteProject(name, this.now()))) throw new GatewayError('NOT_FOUND', `no project named '${name.slice(0, 64)}'`);
    for (const t of tokens) this.options.revocations.add(t.id);
    this.options.log.info('project deleted', { project: name, tokensRevoked: tokens.length });
  }

  async createToken(project: string, input: unknown, admin: string): Promise<IssuedToken> {
    await this.getProject(project);
    const body = object(input);
    const problems: string[] = [];
    const scopes = body['scopes'] ?? ['build'];
    if (!Array.isArray(scopes) || scopes.length === 0 || scopes.some((s) => !(PROJECT_SCOPES as readonly unknown[]).includes(s))) {
      problems.push(`scopes must be a non-empty list of ${PROJECT_SCOPES.join(', ')}; got ${JSON.stringify(scopes)?.slice(0, 80)}`);
    }
    const ttlSec = body['ttlSec'] ?? 30 * 86_400;
    if (typeof ttlSec !== 'number' || !Number.isInteger(ttlSec) || ttlSec < 60 || ttlSec > this.options.maxTokenTtlSec) {
      problems.push(`ttlSec must be an integer from 60 to ${this.options.maxTokenTtlSec}; got ${JSON.stringify(ttlSec)?.slice(0, 40)}`);
    }
    const description = body['description'] ?? '';
    if (typeof description !== 'string' || description.length > 200) problems.push('description must be a string of at most 200 characters');
    unknownFields(body, ['scopes', 'ttlSec', 'description'], problems);
    if (problems.length > 0) throw new GatewayError('BAD_REQUEST', `invalid token request: ${problems.join('; ')}`);
    const id = randomUUID();
    const nowMs = this.now();
    const record: TokenRecord = {
      id,
      project,
      subject: `token:${id}`,
      scopes: [...new Set(scopes as string[])],
      description: description as string,
      createdAtMs: nowMs,
      expiresAtMs: nowMs + (ttlSec as number) * 1000,
      revokedAtMs: undefined,
    };
    // Recorded before it exists anywhere else, so that no token is ever out that cannot be listed and revoked.
    await this.options.store.recordToken(record);
    const token = await this.options.issuer.issueProjectToken({ project, subject: record.subject, scopes: record.scopes, ttlSec: ttlSec as number, tokenId: id });
    this.options.log.info('project token issued', { project, tokenId: id, scopes: record.scopes.join(' '), by: admin });
    return { id, token, project, scopes: record.scopes, expiresAt: new Date(record.expiresAtMs).toISOString() };
  }

  async listTokens(project: string): Promise<TokenRecord[]> {
    await this.getProject(project);
    return this.options.store.listTokens(project);
  }

  async revokeToken(id: string, admin: string): Promise<void> {
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new GatewayError('BAD_REQUEST', `'${id.slice(0, 64)}' is not a token id`);
    const record = await this.options.store.getToken(id);
    // Tokens minted elsewhere (same key, not recorded) can be revoked too: the revocation is then
    // kept for the longest life a token may have.
    const until = record?.expiresAtMs ?? this.now() + this.options.maxTokenTtlSec * 1000;
    await this.options.store.revokeToken(id, this.now(), until);
    this.options.revocations.add(id);
    this.options.log.info('project token revoked', { tokenId: id, project: record?.project ?? '(unrecorded)', by: admin });
  }

  async addTrustPolicy(project: string, input: unknown): Promise<StoredTrustPolicy> {
    await this.getProject(project);
    if (!this.options.validateTrustPolicy) throw new GatewayError('BAD_REQUEST', 'this gateway has no OIDC support configured');
    const policy = this.options.validateTrustPolicy({ ...object(input), project, id: object(input)['id'] ?? randomUUID() }, project);
    await this.options.store.addTrustPolicy(policy);
    this.options.log.info('trust policy added', { project, policyId: policy.id, issuer: policy.issuer });
    return policy;
  }

  async listTrustPolicies(project: string): Promise<StoredTrustPolicy[]> {
    await this.getProject(project);
    return this.options.store.listTrustPolicies(project);
  }

  async removeTrustPolicy(project: string, id: string): Promise<void> {
    if (!(await this.options.store.removeTrustPolicy(project, id))) {
      throw new GatewayError('NOT_FOUND', `project '${project.slice(0, 64)}' has no trust policy '${id.slice(0, 64)}'`);
    }
    this.options.log.info('trust policy removed', { project, policyId: id });
  }
}

function object(input: unknown): Record<string, unknown> {
  if (input === undefined || input === null || input === '') return {};
  if (typeof input !== 'object' || Array.isArray(input)) throw new GatewayError('BAD_REQUEST', 'request body must be a JSON object');
  return input as Record<string, unknown>;
}

function unknownFields(body: Record<string, unknown>, known: string[], problems: string[]): void {
  const extra = Object.keys(body).filter((k) => !known.includes(k));
  if (extra.length > 0) problems.push(`unknown field(s) ${extra.map((k) => `'${k.slice(0, 40)}'`).join(', ')}; expected ${known.join(', ')}`);
}
