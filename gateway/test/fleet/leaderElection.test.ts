// Fleet leadership through the routing table's leases, on MemoryRoutingTable with a driven clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@slipway/proto';
import { MemoryRoutingTable } from '../../src/routing/memoryRoutingTable.js';
import { LeaderElection } from '../../src/fleet/leaderElection.js';

const NAME = 'fleet:builders';
const TTL_MS = 3_000;
const log = createLogger('test', 'silent');

function setup(): { table: MemoryRoutingTable; clock: { nowMs: number }; elect: (holderId: string) => LeaderElection } {
  const table = new MemoryRoutingTable();
  const clock = { nowMs: 1_000_000 };
  const elect = (holderId: string): LeaderElection => new LeaderElection({ table, name: NAME, holderId, ttlMs: TTL_MS, log, now: () => clock.nowMs });
  return { table, clock, elect };
}

test('one holder at a time; renewing keeps the token; a lapsed lease passes to the next holder with a larger token', async () => {
  const { clock, elect } = setup();
  const a = elect('gw-a');
  const b = elect('gw-b');
  assert.equal(a.token(), undefined, 'nobody leads before asking');

  await a.tick();
  await b.tick();
  const first = a.token();
  assert.equal(typeof first, 'number');
  assert.equal(b.token(), undefined, 'B does not lead while A holds the lease');

  // A renews every third of the ttl, so it holds on well past one ttl.
  for (let i = 0; i < 6; i++) {
    clock.nowMs += TTL_MS / 3;
    await a.tick();
    await b.tick();
  }
  assert.equal(a.token(), first, 'renewals keep the same token');
  assert.equal(b.token(), undefined);

  // A stops renewing (stalled); its own clock tells it the lease ran out.
  clock.nowMs += TTL_MS;
  assert.equal(a.token(), undefined, 'a lapsed lease is no leadership, even before the table says so');
  await b.tick();
  const second = b.token();
  assert.ok(second !== undefined && second > first!, `the new holder's token ${second} is larger than ${first}`);

  // A wakes up: the table refuses it.
  await a.tick();
  assert.equal(a.token(), undefined);
  assert.equal(b.token(), second);
});

test('close() resigns, so another replica takes over without waiting out the lease', async () => {
  const { table, clock, elect } = setup();
  const a = elect('gw-a');
  const b = elect('gw-b');
  await a.tick();
  const token = a.token()!;
  await a.close();
  assert.equal(a.token(), undefined);
  assert.equal(await table.checkFence(NAME, token, clock.nowMs), false, 'the resigned token is no longer current');
  await b.tick();
  assert.ok((b.token() ?? 0) > token);
  // A closed election never comes back.
  await a.tick();
  assert.equal(a.token(), undefined);
  await b.close();
});

test('a table that cannot be reached keeps the lease as granted, and no longer', async () => {
  const { table, clock, elect } = setup();
  const a = elect('gw-a');
  await a.tick();
  const token = a.token();
  const original = table.acquireLeadership.bind(table);
  table.acquireLeadership = async () => {
    throw new Error('connection refused');
  };
  clock.nowMs += TTL_MS / 3;
  await a.tick();
  assert.equal(a.token(), token, 'still within the lease granted earlier');
  clock.nowMs += TTL_MS;
  await a.tick();
  assert.equal(a.token(), undefined, 'past the lease the token is gone');
  table.acquireLeadership = original;
  await a.tick();
  assert.ok((a.token() ?? 0) > token!, 'back with a new token once the table answers');
  await a.close();
});

test('start() tries at once and close() clears its timer', async () => {
  const { elect } = setup();
  const a = elect('gw-a');
  await a.start();
  assert.equal(typeof a.token(), 'number');
  await a.close();
  assert.equal(a.token(), undefined);
});
