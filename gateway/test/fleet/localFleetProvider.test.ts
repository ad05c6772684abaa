// The local fleet: the agents an operator runs. It lists them and can do nothing else, and the
// reconciler leaves it alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@slipway/proto';
import { MemoryRoutingTable } from '../../src/routing/memoryRoutingTable.js';
import { LocalFleetProvider } from '../../src/fleet/localFleetProvider.js';
import { LeaderElection } from '../../src/fleet/leaderElection.js';
import { FleetReconciler } from '../../src/fleet/fleetReconciler.js';
import { GatewayError } from '../../src/gatewayError.js';
import { createGatewayMetrics } from '../../src/metrics.js';

const log = createLogger('test', 'silent');

async function fleetFailed(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof GatewayError);
    assert.equal(err.code, 'FLEET_FAILED');
    return err.message;
  }
  assert.fail('expected FLEET_FAILED');
}

test('list() reports the live builders as running instances; everything else is refused', async () => {
  const table = new MemoryRoutingTable();
  const clock = { nowMs: 1_000_000 };
  const fleet = new LocalFleetProvider({ table, now: () => clock.nowMs });
  const reg = { fleet: 'local', capacity: 2, gatewayId: 'gw-a', leaseMs: 10_000 };
  await table.registerBuilder({ ...reg, agentId: 'laptop', platform: 'linux/amd64', nowMs: clock.nowMs });
  await table.registerBuilder({ ...reg, agentId: 'pi', platform: 'linux/arm64', nowMs: clock.nowMs - 9_000 });
  await table.bindBuilder('laptop', 'linux/amd64', 'acme');
  clock.nowMs += 1_000;

  assert.deepEqual(await fleet.list(), [
    { instanceId: 'laptop', platform: 'linux/amd64', state: 'running', project: 'acme', launchedAtMs: 1_000_000, stoppedAtMs: undefined },
  ], 'the arm64 agent whose lease passed is not listed');
  assert.equal(fleet.canProvision('linux/amd64'), false);
  assert.match(await fleetFailed(fleet.launch({ platform: 'linux/amd64', project: 'acme', clientToken: 't' })), /local fleet cannot launch/);
  assert.match(await fleetFailed(fleet.start(['laptop'])), /cannot start laptop/);
  assert.match(await fleetFailed(fleet.stop(['laptop'])), /cannot stop laptop/);
  assert.match(await fleetFailed(fleet.terminate(['laptop'])), /cannot terminate laptop/);
  assert.match(await fleetFailed(fleet.setProject('laptop', undefined)), /cannot set the project/);
});

test('the reconciler makes no call on a local fleet, whatever waits and idles', async () => {
  const table = new MemoryRoutingTable();
  const clock = { nowMs: 2_000_000 };
  const now = (): number => clock.nowMs;
  const calls: string[] = [];
  const local = new LocalFleetProvider({ table, now });
  // Every method recorded, so a call of any kind shows.
  const spy = new Proxy(local, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(prop));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const election = new LeaderElection({ table, name: 'fleet:local', holderId: 'gw-a', ttlMs: 30_000, log, now });
  await election.tick();
  const reconciler = new FleetReconciler({
    fleet: spy,
    table,
    election,
    leadershipName: 'fleet:local',
    platforms: ['linux/amd64'],
    idleStopMs: 1,
    retentionMs: 1,
    warmPoolSize: 2,
    reconcileIntervalMs: 1_000,
    maxInstancesPerPlatform: 10,
    metrics: createGatewayMetrics(() => [], () => []),
    log,
    now,
  });
  await table.registerBuilder({ agentId: 'laptop', platform: 'linux/amd64', fleet: 'local', capacity: 1, gatewayId: 'gw-a', nowMs: clock.nowMs, leaseMs: 60_000 });
  await table.bindBuilder('laptop', 'linux/amd64', 'acme');
  await table.acquire({ buildId: 'b-1', project: 'beta', platform: 'linux/amd64', nowMs: clock.nowMs, spillAfterMs: 0, allocationLeaseMs: 60_000 });
  clock.nowMs += 10_000;
  const report = await reconciler.reconcileOnce();
  assert.equal(report.leader, false);
  assert.deepEqual(calls.filter((c) => c !== 'kind'), []);
  assert.equal((await table.getBuilder('laptop', 'linux/amd64'))?.draining, false, 'nothing drained');
  await reconciler.close();
  await election.close();
});
