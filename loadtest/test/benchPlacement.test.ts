// Runs `bench:placement --quick` as a user would (its own process, a real redis-server) and
// checks the shape of what it reports. Speed and ratios are never asserted here: the figures only
// have to be there, and the builds have to add up.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { PlacementResults } from '../src/placementResults.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RUN_LIMIT_MS = 90_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runBench(args: string[]): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SLIPWAY_BENCH_')) env[k] = v;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'loadtest/src/benchPlacement.ts', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // SIGTERM lets the bench stop its redis-server; SIGKILL if even that hangs.
    let kill: NodeJS.Timeout | undefined;
    const limit = setTimeout(() => {
      child.kill('SIGTERM');
      kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    }, RUN_LIMIT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

describe('bench:placement --quick', () => {
  let outDir: string;
  let run: Run;
  let results: PlacementResults;

  before(async () => {
    outDir = await mkdtemp(path.join(os.tmpdir(), 'slipway-bench-placement-test-'));
    run = await runBench(['--quick', '--measure-min', '20', '--redis-seconds', '1', '--redis-closed-seconds', '1', '--redis-serial-seconds', '1', '--out', outDir]);
  });

  after(async () => {
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it('exits 0 and writes one JSON results file', async () => {
    assert.deepEqual({ code: run.code, signal: run.signal }, { code: 0, signal: null }, `stderr:\n${run.stderr}\nstdout:\n${run.stdout}`);
    const files = await readdir(outDir);
    assert.equal(files.length, 1, `files in ${outDir}: ${files.join(', ')}`);
    assert.match(files[0]!, /^placement-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ\.json$/);
    results = JSON.parse(await readFile(path.join(outDir, files[0]!), 'utf8')) as PlacementResults;
    assert.equal(results.schema, 'slipway-bench-placement/2');
  });

  it('simulates every placer at the working-set load and both slot loads on the same builds, and places all of them', () => {
    assert.ok(results, 'no results file (see the first test)');
    const sim = results.simulation!;
    assert.deepEqual(sim.map((l) => l.label), ['ws 60%', '50%', '90%']);
    assert.deepEqual(sim.map((l) => l.utilisationTarget).slice(1), [0.5, 0.9]);
    const ws = sim[0]!;
    assert.deepEqual(ws.workingSet, { share: 0.6, targetProjectsPerWindow: 120 });
    // Its working set fits in the builders, unlike the slot loads': what the load is for.
    assert.ok(ws.distinctProjectsPerWindow < results.config.builders, `${ws.distinctProjectsPerWindow} projects per window`);
    assert.ok(sim[1]!.distinctProjectsPerWindow > results.config.builders, `${sim[1]!.distinctProjectsPerWindow} projects per window at 50%`);
    for (const load of sim) {
      assert.deepEqual(load.placers.map((p) => p.placer), ['slipway', 'slipway+evict', 'random', 'consistent-hash']);
      for (const p of load.placers) {
        assert.equal(p.measuredBuilds, load.measuredBuilds, `${p.placer} saw another trace`);
        assert.equal(p.repeatBuilds + p.firstBuilds, p.measuredBuilds);
        assert.equal(p.placed + p.unplaced, p.measuredBuilds);
        assert.ok(p.warmRepeat <= p.repeatBuilds && p.warmRatio >= 0 && p.warmRatio <= 1, `${p.placer}: ${p.warmRepeat}/${p.repeatBuilds}`);
        // The ceiling holds for placers that start builds in arrival order; Slipway holds builds back for their builder.
        if (p.placer === 'random' || p.placer === 'consistent-hash') {
          assert.ok(p.warmRepeat <= load.ceiling.warmRepeat, `${p.placer} beat the clairvoyant ceiling: ${p.warmRepeat} > ${load.ceiling.warmRepeat}`);
        }
      }
      assert.ok(load.measuredBuilds > 0);
    }
  });

  it('measured every Redis run without errors and printed both tables and a verdict per target', () => {
    assert.ok(results, 'no results file (see the first test)');
    const runs = results.redis!.runs;
    assert.deepEqual(runs.map((r) => r.result.mode), ['open-loop', 'open-loop', 'closed-loop', 'closed-loop']);
    for (const r of runs) {
      assert.equal(r.result.errors, 0, `${r.label}: ${r.result.firstError}`);
      assert.ok(r.result.placed > 0, `${r.label} placed nothing`);
      assert.ok(r.result.acquire !== undefined && r.result.acquire.p99Ms > 0);
    }
    assert.equal(results.verdicts.length, 3);
    assert.match(run.stdout, /^load\s+placer\s+repeat\s+warm/m);
    assert.match(run.stdout, /^run\s+answered\/s\s+placed\/s/m);
    assert.equal((run.stdout.match(/^ {2}(MET|NOT MET) /gm) ?? []).length, 3);
    assert.match(run.stdout, /seed \d+/);
    assert.match(run.stdout, /^ws 60%\s+slipway\s/m);
    assert.match(run.stdout, /^ {2}(MET|NOT MET) +>= 95\.0% warm hits when capacity suffices, with queue wait p99 .*load ws 60%/m);
  });
});
