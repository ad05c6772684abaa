// Runs `bench:tunnel --quick` as a user would (its own process, real gateway, agent and proxy
// processes) and checks the shape of what it reports. Speed is never asserted here: the numbers
// only have to be present, finite and positive, and every uploaded byte has to be accounted for.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { BenchResults } from '../src/benchResults.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TARGETS = ['direct', 'h2', 'websocket'] as const;
const RUN_LIMIT_MS = 100_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runQuickBench(outDir: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SLIPWAY_BENCH_')) env[k] = v;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'loadtest/src/benchTunnel.ts', '--quick', '--out', outDir], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // SIGTERM lets the bench stop the processes it started; SIGKILL if even that hangs.
    let kill: NodeJS.Timeout | undefined;
    const limit = setTimeout(() => {
      child.kill('SIGTERM');
      kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
    }, RUN_LIMIT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function assertPositive(value: unknown, what: string): void {
  assert.equal(typeof value, 'number', `${what} should be a number, got ${JSON.stringify(value)}`);
  assert.ok(Number.isFinite(value) && (value as number) > 0, `${what} should be finite and > 0, got ${value}`);
}

describe('bench:tunnel --quick', () => {
  let outDir: string;
  let run: Run;
  let results: BenchResults;

  before(async () => {
    outDir = await mkdtemp(path.join(os.tmpdir(), 'slipway-bench-test-'));
    run = await runQuickBench(outDir);
  });

  after(async () => {
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it('exits 0 and writes one JSON results file', async () => {
    assert.deepEqual({ code: run.code, signal: run.signal }, { code: 0, signal: null }, `stderr:\n${run.stderr}\nstdout:\n${run.stdout}`);
    const files = await readdir(outDir);
    assert.equal(files.length, 1, `files in ${outDir}: ${files.join(', ')}`);
    assert.match(files[0]!, /^tunnel-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ\.json$/);
    results = JSON.parse(await readFile(path.join(outDir, files[0]!), 'utf8')) as BenchResults;
    assert.match(run.stdout, new RegExp(`results written to .*${files[0]!.replace(/\./g, '\\.')}`));
  });

  it('prints every metric row with a value for each target and a ratio to direct', () => {
    assert.ok(results, 'no results file (see the first test)');
    const c = results.config.concurrency;
    const labels = ['upload MB/s', 'download MB/s', 'first upload MB/s', 'first download MB/s', 'open p50 ms, c=1', 'open p99 ms, c=1', `open p50 ms, c=${c}`, `open p99 ms, c=${c}`];
    const lines = run.stdout.split('\n');
    for (const label of labels) {
      const line = lines.find((l) => l.startsWith(`${label} `));
      assert.ok(line, `no table row '${label}' in:\n${run.stdout}`);
      const cells = line.slice(label.length).trim().split(/\s+/);
      assert.equal(cells.length, 5, `row '${label}' should have direct, h2, ratio, websocket, ratio: ${line}`);
      for (const i of [0, 1, 3]) assertPositive(Number(cells[i]), `${label} cell ${i}`);
      for (const i of [2, 4]) {
        assert.match(cells[i]!, /^\d+(\.\d+)?x$/, `${label} ratio cell ${i}`);
        assertPositive(Number(cells[i]!.slice(0, -1)), `${label} ratio ${i}`);
      }
    }
    assert.match(run.stdout, /^added p50 latency \(slipway h2 p50 - direct p50\): c=1 [+-]\d+\.\d+ ms, c=\d+ [+-]\d+\.\d+ ms$/m);
  });

  it('measured a first transfer, then upload and download, on every target, with every uploaded byte counted by the upstream', () => {
    assert.ok(results, 'no results file (see the first test)');
    assert.equal(results.schema, 'slipway-bench-tunnel/2');
    for (const [kind, list] of [['first', results.warmups], ['measured', results.transfers]] as const) {
      assert.equal(list.length, 2 * TARGETS.length, `${kind} transfers: ${list.length}`);
    }
    for (const direction of ['upload', 'download'] as const) {
      for (const target of TARGETS) {
        const first = results.warmups.find((x) => x.direction === direction && x.target === target);
        assert.ok(first, `no first ${direction} for ${target}`);
        assert.equal(first.bytes, results.config.warmupBytes);
        assert.equal(first.bytesVerified, first.bytes, `first ${direction} via ${target}: bytes verified`);
        assertPositive(first.mbPerSec, `first ${direction} ${target} MB/s`);
        const t = results.transfers.find((x) => x.direction === direction && x.target === target);
        assert.ok(t, `no ${direction} result for ${target}`);
        assert.equal(t.bytes, direction === 'upload' ? results.config.uploadBytes : results.config.downloadBytes);
        assert.equal(t.bytesVerified, t.bytes, `${direction} via ${target}: bytes verified`);
        assertPositive(t.mbPerSec, `${direction} ${target} MB/s`);
        assertPositive(t.seconds, `${direction} ${target} seconds`);
      }
    }
  });

  it('measured open latency at concurrency 1 and at the configured concurrency on every target', () => {
    assert.ok(results, 'no results file (see the first test)');
    for (const concurrency of [1, results.config.concurrency]) {
      for (const target of TARGETS) {
        const l = results.latencies.find((x) => x.concurrency === concurrency && x.target === target);
        assert.ok(l, `no latency result for ${target} at concurrency ${concurrency}`);
        assert.ok(l.samples >= concurrency && l.samples === l.roundsRun * concurrency, `${target} c=${concurrency}: ${l.samples} samples in ${l.roundsRun} rounds`);
        for (const key of ['p50Ms', 'p99Ms', 'meanMs', 'minMs', 'maxMs'] as const) assertPositive(l[key], `${target} c=${concurrency} ${key}`);
        assert.ok(l.p50Ms <= l.p99Ms && l.p99Ms <= l.maxMs, `${target} c=${concurrency}: p50 ${l.p50Ms} <= p99 ${l.p99Ms} <= max ${l.maxMs}`);
      }
      for (const transport of ['h2', 'websocket'] as const) {
        assert.ok(Number.isFinite(results.addedP50Ms[transport][`c${concurrency}`]), `added p50 for ${transport} at c=${concurrency}`);
      }
    }
    assert.deepEqual(
      results.summary.map((s) => s.key),
      ['upload_mbps', 'download_mbps', 'first_upload_mbps', 'first_download_mbps', 'open_p50_ms_c1', 'open_p99_ms_c1', `open_p50_ms_c${results.config.concurrency}`, `open_p99_ms_c${results.config.concurrency}`],
    );
    for (const s of results.summary) for (const target of TARGETS) assertPositive(s.ratioToDirect[target], `${s.key} ratio for ${target}`);
  });

  it('went through the gateway: it counted the tunnel streams and none failed', () => {
    assert.ok(results, 'no results file (see the first test)');
    assert.ok(results.gateway.streamsOpened > 0, `gateway counted ${results.gateway.streamsOpened} streams`);
    assert.equal(results.gateway.streamsFailed, 0);
    assert.ok(results.gateway.bytesCarried >= 2 * (results.config.uploadBytes + results.config.downloadBytes));
  });
});
