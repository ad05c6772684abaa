// FencedFleet: only the current leader's token acts on the fleet. MemoryRoutingTable, driven clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@slipway/proto';
import { MemoryRoutingTable } from '../../src/routing/memoryRoutingTable.js';
import { LeaderElection } from '../../src/fleet/leaderElection.js';
import { FencedFleet } from '../../src/fleet/fencedFleet.js';
import { GatewayError } from '../../src/gatewayError.js';
import type { FleetInstance, FleetProvider, LaunchRequest } from '../../src/fleet/fleetProvider.js';

const NAME = 'fleet:builders';
const TTL_MS = 3_000;
const log = createLogger('test', 'silent');

// Records every call that reaches the provider.
class RecordingFleet implements FleetProvider {
  readonly kind = 'ec2' as const;
  readonly calls: string[] = [];
  private seq = 0;

  async list(): Promise<FleetInstance[]> {
    this.calls.push('list');
    return [];
  }
  async launch(req: LaunchRequest): Promise<FleetInstance> {
    this.calls.push(`launch ${req.platform} ${req.project ?? '(pool)'}`);
    return { instanceId: `i-${++this.seq}`, platform: req.platform, state: 'pending', project: req.project, launchedAtMs: 0, stoppedAtMs: undefined };
  }
  async start(ids: readonly string[]): Promise<void> {
    this.calls.push(`start ${ids.join(',')}`);
  }
  async stop(ids: readonly string[]): Promise<void> {
    this.calls.push(`stop ${ids.join(',')}`);
  }
  async terminate(ids: readonly string[]): Promise<void> {
    this.calls.push(`terminate ${ids.join(',')}`);
  }
  async setProject(id: string, project: string | undefined): Promise<void> {
    this.calls.push(`setProject ${id} ${project ?? '(pool)'}`);
  }
}

async function staleLeader(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
    assert.equal(err.code, 'STALE_LEADER');
    return err.message;
  }
  assert.fail('expected STALE_LEADER');
}

test('a stale leader (fencing token superseded) cannot act on the fleet', async () => {
  const table = new MemoryRoutingTable();
  const clock = { nowMs: 5_000_000 };
  const now = (): number => clock.nowMs;
  const a = new LeaderElection({ table, name: NAME, holderId: 'gw-a', ttlMs: TTL_MS, log, now });
  const b = new LeaderElection({ table, name: NAME, holderId: 'gw-b', ttlMs: TTL_MS, log, now });

  await a.tick();
  const tokenA = a.token();
  assert.equal(tokenA, 1);
  const providerA = new RecordingFleet();
  const fleetA = new FencedFleet(providerA, table, { name: NAME, token: tokenA, now });
  await fleetA.start(['i-1']);
  assert.deepEqual(providerA.calls, ['start i-1'], 'the current leader acts');

  // A stalls past its lease (a long pause mid-pass); B takes over.
  clock.nowMs += TTL_MS + 1;
  await b.tick();
  const tokenB = b.token();
  assert.equal(tokenB, 2);
  const providerB = new RecordingFleet();
  const fleetB = new FencedFleet(providerB, table, { name: NAME, token: tokenB!, now });

  // A resumes with the token it started its pass with: every mutating call is refused before it
  // reaches the provider.
  providerA.calls.length = 0;
  const message = await staleLeader(fleetA.launch({ platform: 'linux/amd64', project: 'acme', clientToken: 't-1' }));
  assert.match(message, /token 1/);
  assert.match(message, /launch a linux\/amd64 instance for acme/);
  await staleLeader(fleetA.start(['i-1']));
  await staleLeader(fleetA.stop(['i-1']));
  await staleLeader(fleetA.terminate(['i-1']));
  await staleLeader(fleetA.setProject('i-1', 'acme'));
  assert.deepEqual(providerA.calls, [], 'the provider saw no call from the stale leader');

  // Looking is harmless; B acts.
  assert.deepEqual(await fleetA.list(), []);
  await fleetB.stop(['i-1']);
  assert.deepEqual(providerB.calls, ['stop i-1']);
});

test('an expired token is refused even when nobody took over', async () => {
  const table = new MemoryRoutingTable();
  const clock = { nowMs: 7_000_000 };
  const now = (): number => clock.nowMs;
  const lease = await table.acquireLeadership(NAME, 'gw-a', clock.nowMs, TTL_MS);
  const provider = new RecordingFleet();
  const fleet = new FencedFleet(provider, table, { name: NAME, token: lease!.token, now });
  await fleet.setProject('i-9', undefined);
  clock.nowMs += TTL_MS;
  await staleLeader(fleet.terminate(['i-9']));
  assert.deepEqual(provider.calls, ['setProject i-9 (pool)']);
});

test('the margin refuses a call the lease would not cover to its end', async () => {
  const table = new MemoryRoutingTable();
  const clock = { nowMs: 9_000_000 };
  const now = (): number => clock.nowMs;
  const lease = await table.acquireLeadership(NAME, 'gw-a', clock.nowMs, TTL_MS);
  const provider = new RecordingFleet();
  const fleet = new FencedFleet(provider, table, { name: NAME, token: lease!.token, now, marginMs: 1_000 });
  clock.nowMs += TTL_MS - 1_500;
  await fleet.stop(['i-1']);
  clock.nowMs += 1_000;
  const message = await staleLeader(fleet.stop(['i-1']));
  assert.match(message, /margin/);
  assert.deepEqual(provider.calls, ['stop i-1']);
});
