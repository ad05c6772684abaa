import type { Cluster, Redis } from 'ioredis';
import { GatewayError } from '../gatewayError.js';
import type { IdentityStore, ProjectRecord, StoredTrustPolicy, TokenRecord } from './identityStore.js';

export interface RedisIdentityStoreOptions {
  client: Redis | Cluster;
  /** Prepended to every key; no braces (the hash tag is the store's). */
  keyPrefix: string;
}

// Identity data in Redis under one hash tag, so the few multi-key changes (deleting a project
// with its tokens and policies) run as one MULTI on one slot, on a cluster too.
//   {identity}:projects            hash  name -> ProjectRecord JSON
//   {identity}:tokens              hash  id -> TokenRecord JSON
//   {identity}:tokens:<project>    set   token ids of the project
//   {identity}:revoked             zset  id -> until (ms); pruned as they pass
//   {identity}:trust:<project>     hash  policy id -> policy JSON
export class RedisIdentityStore implements IdentityStore {
  private readonly client: Redis | Cluster;
  private readonly k: (suffix: string) => string;

  constructor(options: RedisIdentityStoreOptions) {
    if (/[{}]/.test(options.keyPrefix)) throw new GatewayError('CONFIG_INVALID', `key prefix '${options.keyPrefix}' must not contain braces`);
    this.client = options.client;
    this.k = (suffix) => `${options.keyPrefix}{identity}:${suffix}`;
  }

  private async run<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw new GatewayError('ROUTING_UNAVAILABLE', `identity store: ${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  createProject(project: ProjectRecord): Promise<boolean> {
    return this.run('create project', async () => (await this.client.hsetnx(this.k('projects'), project.name, JSON.stringify(project))) === 1);
  }

  getProject(name: string): Promise<ProjectRecord | undefined> {
    return this.run('read project', async () => parse<ProjectRecord>(await this.client.hget(this.k('projects'), name)));
  }

  listProjects(): Promise<ProjectRecord[]> {
    return this.run('list projects', async () =>
      Object.values(await this.client.hgetall(this.k('projects')))
        .map((v) => JSON.parse(v) as ProjectRecord)
        .sort((a, b) => a.name.localeCompare(b.name)),
    );
  }

  deleteProject(name: string, nowMs: number): Promise<boolean> {
    return this.run('delete project', async () => {
      const ids = await this.client.smembers(this.k(`tokens:${name}`));
      const records = ids.length > 0 ? await this.client.hmget(this.k('tokens'), ...ids) : [];
      const tx = this.client.multi().hdel(this.k('projects'), name).del(this.k(`trust:${name}`));
      for (const raw of records) {
        const t = parse<TokenRecord>(raw);
        if (!t) continue;
        if (t.revokedAtMs === undefined) tx.hset(this.k('tokens'), t.id, JSON.stringify({ ...t, revokedAtMs: nowMs }));
        if (t.expiresAtMs > nowMs) tx.zadd(this.k('revoked'), 'GT', t.expiresAtMs, t.id);
      }
      const results = await tx.exec();
      return Number(results?.[0]?.[1] ?? 0) === 1;
    });
  }

  recordToken(token: TokenRecord): Promise<void> {
    return this.run('record token', async () => {
      await this.client.multi().hset(this.k('tokens'), token.id, JSON.stringify(token)).sadd(this.k(`tokens:${token.project}`), token.id).exec();
    });
  }

  listTokens(project: string): Promise<TokenRecord[]> {
    return this.run('list tokens', async () => {
      const ids = await this.client.smembers(this.k(`tokens:${project}`));
      if (ids.length === 0) return [];
      return (await this.client.hmget(this.k('tokens'), ...ids)).flatMap((raw) => parse<TokenRecord>(raw) ?? []);
    });
  }

  getToken(id: string): Promise<TokenRecord | undefined> {
    return this.run('read token', async () => parse<TokenRecord>(await this.client.hget(this.k('tokens'), id)));
  }

  revokeToken(id: string, nowMs: number, expiresAtMs: number): Promise<void> {
    return this.run('revoke token', async () => {
      const t = parse<TokenRecord>(await this.client.hget(this.k('tokens'), id));
      const tx = this.client.multi();
      if (t && t.revokedAtMs === undefined) tx.hset(this.k('tokens'), id, JSON.stringify({ ...t, revokedAtMs: nowMs }));
      if (expiresAtMs > nowMs) tx.zadd(this.k('revoked'), 'GT', expiresAtMs, id);
      await tx.exec();
    });
  }

  listRevoked(nowMs: number): Promise<string[]> {
    return this.run('list revocations', async () => {
      const [, [, ids]] = (await this.client
        .multi()
        .zremrangebyscore(this.k('revoked'), '-inf', String(nowMs))
        .zrange(this.k('revoked'), '0', '-1')
        .exec()) as [[unknown, unknown], [unknown, string[]]];
      return ids;
    });
  }

  addTrustPolicy(policy: StoredTrustPolicy): Promise<void> {
    return this.run('add trust policy', async () => {
      await this.client.hset(this.k(`trust:${policy.project}`), policy.id, JSON.stringify(policy));
    });
  }

  listTrustPolicies(project: string): Promise<StoredTrustPolicy[]> {
    return this.run('list trust policies', async () =>
      Object.values(await this.client.hgetall(this.k(`trust:${project}`))).map((v) => JSON.parse(v) as StoredTrustPolicy),
    );
  }

  removeTrustPolicy(project: string, id: string): Promise<boolean> {
    return this.run('remove trust policy', async () => (await this.client.hdel(this.k(`trust:${project}`), id)) === 1);
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => {});
  }
}

function parse<T>(raw: string | null | undefined): T | undefined {
  return raw === null || raw === undefined ? undefined : (JSON.parse(raw) as T);
}
