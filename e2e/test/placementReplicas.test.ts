// Placement through three real gateway replicas sharing one Redis (standalone, then a 3-master
// Redis Cluster): repeated builds of a project land on its warm builder, two projects never share
// a builder, and under 200 concurrent acquisitions spread over the replicas no builder exceeds its
// limit and no build is placed twice, checked as an invariant over the final state.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Redis, Cluster } from 'ioredis';
import { makeTestPki, RedisRoutingTable, type TestPki } from '@slipway/gateway';
import {
  startRedis,
  startRedisCluster,
  startStack,
  startEchoServer,
  gatewayApi,
  type RedisServer,
  type RedisCluster,
  type SlipwayStack,
  type EchoServer,
} from '@slipway/e2e';

const BUILDERS = 12;
const CAPACITY = 3;
const PROJECTS = 10;
const BUILDS = 200;

let pki: TestPki;
let echo: EchoServer;
let redis: RedisServer;
let cluster: RedisCluster;

before(async () => {
  pki = await makeTestPki();
  echo = await startEchoServer();
  redis = await startRedis();
  cluster = await startRedisCluster({ masters: 3 });
});

after(async () => {
  await echo.close();
  await redis.stop();
  await cluster.stop();
  await pki.cleanup();
});

interface Build {
  buildId: string;
  token: string;
  project: string;
  placedOn: string | undefined;
  finished: boolean;
}

// Zipf-ish popularity: a few projects build a lot.
function projectFor(i: number): string {
  const weights = Array.from({ length: PROJECTS }, (_, k) => 1 / (k + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  let x = ((i * 7919) % 1000) / 1000 * total;
  for (let k = 0; k < PROJECTS; k++) {
    x -= weights[k]!;
    if (x <= 0) return `proj-${k}`;
  }
  return `proj-${PROJECTS - 1}`;
}

async function scenario(name: string, makeClient: (i: number) => Redis | Cluster): Promise<void> {
  const keyPrefix = `${name}${process.pid}:`;
  const replicas: SlipwayStack[] = [];
  try {
    for (let r = 0; r < 3; r++) {
      replicas.push(
        await startStack({
          table: new RedisRoutingTable({ client: makeClient(r), keyPrefix }),
          pki,
          gatewayId: `${name}-gw-${r}`,
          spillAfterMs: 300,
          heartbeatIntervalMs: 1_000,
          heartbeatTimeoutMs: 10_000,
        }),
      );
    }
    // Builders spread over the replicas: each agent links to one of them.
    for (let i = 0; i < BUILDERS; i++) {
      await replicas[i % 3]!.startAgent({ agentId: `${name}-b${i}`, platform: 'linux/amd64', upstream: `buildkitd:${echo.address}`, maxBuilds: CAPACITY });
    }
    const table = replicas[0]!.table;

    // Warm affinity first: the same project, built three times in a row through different
    // replicas, lands on the same builder every time; another project gets another builder.
    const placedOn = async (project: string, via: SlipwayStack): Promise<{ agentId: string; warm: boolean; buildId: string; token: string }> => {
      const created = await gatewayApi<{ buildId: string; token: string }>(via, 'POST', '/v1/builds', await via.clientToken(project), { platforms: ['linux/amd64'] });
      const answer = await gatewayApi<{ state: string; builder: { agentId: string }; warm: boolean }>(via, 'POST', `/v1/builds/${created.body.buildId}/acquire`, created.body.token, {
        platform: 'linux/amd64',
      });
      assert.equal(answer.body.state, 'active', `${project} placed: ${JSON.stringify(answer.body)}`);
      return { agentId: answer.body.builder.agentId, warm: answer.body.warm, ...created.body };
    };
    const first = await placedOn('warm-a', replicas[0]!);
    await gatewayApi(replicas[0]!, 'POST', `/v1/builds/${first.buildId}/finish`, first.token);
    for (const via of [replicas[1]!, replicas[2]!, replicas[0]!]) {
      const again = await placedOn('warm-a', via);
      assert.equal(again.agentId, first.agentId, 'the project returns to its warm builder');
      assert.equal(again.warm, true);
      await gatewayApi(via, 'POST', `/v1/builds/${again.buildId}/finish`, again.token);
    }
    const other = await placedOn('warm-b', replicas[1]!);
    assert.notEqual(other.agentId, first.agentId, 'another project never gets warm-a\'s builder');
    await gatewayApi(replicas[1]!, 'POST', `/v1/builds/${other.buildId}/finish`, other.token);

    // 200 builds of 10 projects, created and acquired concurrently through all three replicas.
    const builds: Build[] = await Promise.all(
      Array.from({ length: BUILDS }, async (_, i) => {
        const via = replicas[i % 3]!;
        const project = projectFor(i);
        const created = await gatewayApi<{ buildId: string; token: string }>(via, 'POST', '/v1/builds', await via.clientToken(project), { platforms: ['linux/amd64'] });
        assert.equal(created.status, 201);
        return { ...created.body, project, placedOn: undefined, finished: false };
      }),
    );
    const deadline = Date.now() + 120_000;
    let round = 0;
    while (builds.some((b) => !b.finished)) {
      assert.ok(Date.now() < deadline, `all builds placed in time (${builds.filter((b) => !b.finished).length} left)`);
      round++;
      await Promise.all(
        builds
          .filter((b) => b.placedOn === undefined)
          .map(async (b, i) => {
            const via = replicas[(i + round) % 3]!;
            const answer = await gatewayApi<{ state: string; builder?: { agentId: string } }>(via, 'POST', `/v1/builds/${b.buildId}/acquire`, b.token, { platform: 'linux/amd64' });
            if (answer.body.state === 'active') b.placedOn = answer.body.builder!.agentId;
            else assert.equal(answer.body.state, 'pending', JSON.stringify(answer.body));
          }),
      );
      // Invariants hold at every step, not only at the end.
      await checkInvariants(table, builds);
      // Finish about half of what runs, so waiting builds get their turn (and spill when it is long).
      await Promise.all(
        builds
          .filter((b) => b.placedOn !== undefined && !b.finished)
          .filter((_, i) => i % 2 === round % 2)
          .map(async (b) => {
            const answer = await gatewayApi(replicas[round % 3]!, 'POST', `/v1/builds/${b.buildId}/finish`, b.token);
            assert.equal(answer.status, 200);
            b.finished = true;
          }),
      );
      await new Promise((r) => setTimeout(r, 100));
    }
    await checkInvariants(table, builds);
    // Every build ran exactly once, on one builder, and the table agrees on where.
    for (const b of builds) {
      const record = await table.getAllocation(b.buildId, 'linux/amd64');
      assert.equal(record?.state, 'finished');
      assert.equal(record?.agentId, b.placedOn, `build ${b.buildId} stayed where it was placed`);
    }
  } finally {
    for (const r of replicas) await r.close().catch(() => {});
    for (const r of replicas) await r.table.close().catch(() => {});
  }
}

async function checkInvariants(table: SlipwayStack['table'], builds: Build[]): Promise<void> {
  const builders = await table.listBuilders('linux/amd64');
  const seen = new Map<string, string>();
  for (const builder of builders) {
    const on = await table.allocationsOn(builder.agentId, 'linux/amd64');
    assert.ok(builder.active <= builder.capacity, `${builder.agentId}: ${builder.active} active > capacity ${builder.capacity}`);
    assert.equal(on.length, builder.active, `${builder.agentId}: active count matches its allocations`);
    const projects = new Set<string>();
    for (const buildId of on) {
      assert.equal(seen.get(buildId), undefined, `build ${buildId} is on ${builder.agentId} and ${seen.get(buildId)}`);
      seen.set(buildId, builder.agentId);
      const record = await table.getAllocation(buildId, 'linux/amd64');
      assert.equal(record?.state, 'active');
      assert.equal(record?.agentId, builder.agentId);
      assert.equal(record?.project, builder.project, `${builder.agentId} runs only its bound project`);
      projects.add(record!.project);
    }
    assert.ok(projects.size <= 1, `${builder.agentId} runs builds of ${[...projects].join(', ')}`);
  }
  for (const b of builds) {
    if (b.placedOn !== undefined && !b.finished) assert.equal(seen.get(b.buildId), b.placedOn, `build ${b.buildId} is active where it was placed`);
  }
}

describe('placement through three gateway replicas', () => {
  test('on a standalone redis-server', async () => {
    await scenario('solo', () => new Redis(redis.url, { maxRetriesPerRequest: 2 }));
  });
  test('on a 3-master Redis Cluster', async () => {
    await scenario('clu', (i) => new Cluster([cluster.nodes[i % cluster.nodes.length]!], { redisOptions: { maxRetriesPerRequest: 2 } }));
  });
});
