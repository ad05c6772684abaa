import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GatewayError } from '../gatewayError.js';
import type { IdentityStore, ProjectRecord, StoredTrustPolicy, TokenRecord } from './identityStore.js';

interface Snapshot {
  version: 1;
  projects: ProjectRecord[];
  tokens: TokenRecord[];
  revoked: Array<[string, number]>;
  policies: StoredTrustPolicy[];
}

// One process's identity store. With a file it survives restarts (the dev launcher keeps it in
// .slipway/): every change rewrites the file atomically (write, then rename), mode 0600 since it
// names tokens' ids and projects' CI identities.
export class MemoryIdentityStore implements IdentityStore {
  private readonly projects = new Map<string, ProjectRecord>();
  private readonly tokens = new Map<string, TokenRecord>();
  private readonly revoked = new Map<string, number>();
  private readonly policies = new Map<string, StoredTrustPolicy>();

  constructor(private readonly file?: string) {
    if (file) this.load(file);
  }

  private load(file: string): void {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new GatewayError('CONFIG_INVALID', `cannot read the identity store ${file}: ${(err as Error).message}`);
    }
    let snapshot: Snapshot;
    try {
      snapshot = JSON.parse(text) as Snapshot;
    } catch (err) {
      throw new GatewayError('CONFIG_INVALID', `identity store ${file} is not JSON: ${(err as Error).message}`);
    }
    if (snapshot.version !== 1) throw new GatewayError('CONFIG_INVALID', `identity store ${file} has version ${String(snapshot.version)}, expected 1`);
    for (const p of snapshot.projects) this.projects.set(p.name, p);
    for (const t of snapshot.tokens) this.tokens.set(t.id, t);
    for (const [id, until] of snapshot.revoked) this.revoked.set(id, until);
    for (const p of snapshot.policies) this.policies.set(policyKey(p.project, p.id), p);
  }

  private save(): void {
    if (!this.file) return;
    const snapshot: Snapshot = {
      version: 1,
      projects: [...this.projects.values()],
      tokens: [...this.tokens.values()],
      revoked: [...this.revoked],
      policies: [...this.policies.values()],
    };
    mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(snapshot, null, 1), { mode: 0o600 });
    renameSync(tmp, this.file);
  }

  async createProject(project: ProjectRecord): Promise<boolean> {
    if (this.projects.has(project.name)) return false;
    this.projects.set(project.name, { ...project });
    this.save();
    return true;
  }

  async getProject(name: string): Promise<ProjectRecord | undefined> {
    const p = this.projects.get(name);
    return p && { ...p };
  }

  async listProjects(): Promise<ProjectRecord[]> {
    return [...this.projects.values()].map((p) => ({ ...p })).sort((a, b) => a.name.localeCompare(b.name));
  }

  async deleteProject(name: string, nowMs: number): Promise<boolean> {
    if (!this.projects.delete(name)) return false;
    for (const t of this.tokens.values()) {
      if (t.project !== name) continue;
      if (t.revokedAtMs === undefined) t.revokedAtMs = nowMs;
      if (t.expiresAtMs > nowMs) this.revoked.set(t.id, t.expiresAtMs);
    }
    for (const [key, p] of this.policies) if (p.project === name) this.policies.delete(key);
    this.save();
    return true;
  }

  async recordToken(token: TokenRecord): Promise<void> {
    this.tokens.set(token.id, { ...token, scopes: [...token.scopes] });
    this.save();
  }

  async listTokens(project: string): Promise<TokenRecord[]> {
    return [...this.tokens.values()].filter((t) => t.project === project).map((t) => ({ ...t, scopes: [...t.scopes] }));
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    const t = this.tokens.get(id);
    return t && { ...t, scopes: [...t.scopes] };
  }

  async revokeToken(id: string, nowMs: number, expiresAtMs: number): Promise<void> {
    const t = this.tokens.get(id);
    if (t && t.revokedAtMs === undefined) t.revokedAtMs = nowMs;
    if (expiresAtMs > nowMs) this.revoked.set(id, Math.max(expiresAtMs, this.revoked.get(id) ?? 0));
    this.save();
  }

  async listRevoked(nowMs: number): Promise<string[]> {
    for (const [id, until] of this.revoked) if (until <= nowMs) this.revoked.delete(id);
    return [...this.revoked.keys()];
  }

  async addTrustPolicy(policy: StoredTrustPolicy): Promise<void> {
    this.policies.set(policyKey(policy.project, policy.id), structuredClone(policy));
    this.save();
  }

  async listTrustPolicies(project: string): Promise<StoredTrustPolicy[]> {
    return [...this.policies.values()].filter((p) => p.project === project).map((p) => structuredClone(p));
  }

  async removeTrustPolicy(project: string, id: string): Promise<boolean> {
    const removed = this.policies.delete(policyKey(project, id));
    if (removed) this.save();
    return removed;
  }

  async close(): Promise<void> {}
}

function policyKey(project: string, id: string): string {
  return `${project}\u0000${id}`;
}
