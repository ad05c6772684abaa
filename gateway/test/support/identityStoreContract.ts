import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { IdentityStore, TokenRecord } from '../../src/identity/identityStore.js';

// The behaviour every IdentityStore must have, run against each implementation.
export function identityStoreContract(name: string, factory: () => Promise<{ store: IdentityStore; cleanup(): Promise<void> }>): void {
  const now = 1_800_000_000_000;
  const token = (id: string, project: string, expiresAtMs = now + 60_000): TokenRecord => ({
    id,
    project,
    subject: `token:${id}`,
    scopes: ['build'],
    description: '',
    createdAtMs: now,
    expiresAtMs,
    revokedAtMs: undefined,
  });

  describe(`${name}: identity store contract`, () => {
    it('creates a project once, lists and deletes it', async () => {
      const { store, cleanup } = await factory();
      try {
        assert.equal(await store.createProject({ name: 'web', createdAtMs: now, isolateUntrusted: false }), true);
        assert.equal(await store.createProject({ name: 'web', createdAtMs: now + 1, isolateUntrusted: true }), false);
        assert.equal(await store.createProject({ name: 'api', createdAtMs: now, isolateUntrusted: true }), true);
        assert.deepEqual((await store.listProjects()).map((p) => p.name), ['api', 'web']);
        assert.equal((await store.getProject('web'))?.isolateUntrusted, false);
        assert.equal(await store.deleteProject('web', now), true);
        assert.equal(await store.deleteProject('web', now), false);
        assert.equal(await store.getProject('web'), undefined);
      } finally {
        await cleanup();
      }
    });

    it('records tokens per project, revokes by id until the token would have expired', async () => {
      const { store, cleanup } = await factory();
      try {
        await store.createProject({ name: 'web', createdAtMs: now, isolateUntrusted: false });
        await store.recordToken(token('00000000-0000-4000-8000-000000000001', 'web', now + 10_000));
        await store.recordToken(token('00000000-0000-4000-8000-000000000002', 'web', now + 20_000));
        await store.recordToken(token('00000000-0000-4000-8000-000000000003', 'api'));
        assert.equal((await store.listTokens('web')).length, 2);
        await store.revokeToken('00000000-0000-4000-8000-000000000001', now, now + 10_000);
        await store.revokeToken('00000000-0000-4000-8000-000000000001', now + 5, now + 10_000);
        assert.equal((await store.getToken('00000000-0000-4000-8000-000000000001'))?.revokedAtMs, now, 'the first revocation time is kept');
        // A token never recorded here can be revoked too.
        await store.revokeToken('00000000-0000-4000-8000-00000000dead', now, now + 30_000);
        assert.deepEqual((await store.listRevoked(now)).sort(), ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000dead']);
        // Past its expiry a revoked token needs no revocation entry.
        assert.deepEqual(await store.listRevoked(now + 15_000), ['00000000-0000-4000-8000-00000000dead']);
      } finally {
        await cleanup();
      }
    });

    it("deleting a project revokes its live tokens and drops its trust policies, leaving other projects' alone", async () => {
      const { store, cleanup } = await factory();
      try {
        await store.createProject({ name: 'web', createdAtMs: now, isolateUntrusted: false });
        await store.createProject({ name: 'api', createdAtMs: now, isolateUntrusted: false });
        await store.recordToken(token('00000000-0000-4000-8000-000000000011', 'web'));
        await store.recordToken(token('00000000-0000-4000-8000-000000000012', 'api'));
        await store.addTrustPolicy({ id: 'gh', project: 'web', issuer: 'https://token.actions.githubusercontent.com' });
        await store.addTrustPolicy({ id: 'gh', project: 'api', issuer: 'https://token.actions.githubusercontent.com' });
        await store.deleteProject('web', now);
        assert.deepEqual(await store.listRevoked(now), ['00000000-0000-4000-8000-000000000011']);
        assert.deepEqual(await store.listTrustPolicies('web'), []);
        assert.equal((await store.listTrustPolicies('api')).length, 1);
      } finally {
        await cleanup();
      }
    });

    it('adds, lists and removes trust policies per project', async () => {
      const { store, cleanup } = await factory();
      try {
        await store.addTrustPolicy({ id: 'p1', project: 'web', issuer: 'https://a.example', audience: 'slipway', conditions: { repository: 'org/web' } });
        await store.addTrustPolicy({ id: 'p2', project: 'web', issuer: 'https://b.example' });
        const listed = await store.listTrustPolicies('web');
        assert.deepEqual(listed.map((p) => p.id).sort(), ['p1', 'p2']);
        assert.deepEqual(listed.find((p) => p.id === 'p1')?.['conditions'], { repository: 'org/web' });
        assert.equal(await store.removeTrustPolicy('web', 'p1'), true);
        assert.equal(await store.removeTrustPolicy('web', 'p1'), false);
        assert.equal(await store.removeTrustPolicy('api', 'p2'), false, "a policy id is only found in its own project");
      } finally {
        await cleanup();
      }
    });
  });
}
