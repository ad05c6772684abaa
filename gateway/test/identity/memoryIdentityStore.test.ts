import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { MemoryIdentityStore } from '../../src/identity/memoryIdentityStore.js';
import { identityStoreContract } from '../support/identityStoreContract.js';

identityStoreContract('MemoryIdentityStore', async () => ({ store: new MemoryIdentityStore(), cleanup: async () => {} }));

identityStoreContract('MemoryIdentityStore with a file', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'sw-identity-'));
  return { store: new MemoryIdentityStore(path.join(dir, 'identity.json')), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

it('a file-backed store survives a restart, and its file is private', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'sw-identity-'));
  try {
    const file = path.join(dir, 'identity.json');
    const first = new MemoryIdentityStore(file);
    await first.createProject({ name: 'web', createdAtMs: 1, isolateUntrusted: true });
    await first.revokeToken('00000000-0000-4000-8000-000000000001', 1, Date.now() + 60_000);
    const second = new MemoryIdentityStore(file);
    assert.equal((await second.getProject('web'))?.isolateUntrusted, true);
    assert.deepEqual(await second.listRevoked(Date.now()), ['00000000-0000-4000-8000-000000000001']);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
