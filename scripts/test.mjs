#!/usr/bin/env node
// `npm test`: collects <workspace>/test/**/*.test.ts and runs them with node:test through tsx.
//
// Node 20's `node --test` neither expands globs nor finds .ts files in folders; given nothing it
// reports 0 tests and exits 0. So this script collects explicit paths and refuses to pass when it
// finds no test file or no test ran.
//
// Usage: npm test [-- [FILE|DIR ...] [--node-test-flag ...]]
//   FILE/DIR filters are resolved against the directory npm was started from, then the repo root.
//   Arguments starting with "--" are passed on to `node --test` (e.g. --test-name-pattern=redis).
//
// Unit test files run in parallel (one process per file); files under e2e/ start dockerds, which
// contend for docker0 and CPU, so they run one file at a time in a second batch.
// Environment: SLIPWAY_TEST_TIMEOUT_MS overrides the per-test timeout.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WORKSPACES = ['proto', 'gateway', 'agent', 'cli', 'loadtest', 'e2e'];
const SERIAL_PREFIX = 'e2e' + path.sep;
const UNIT_TIMEOUT_MS = 120_000;
const E2E_TIMEOUT_MS = 300_000;

function fail(message) {
  process.stderr.write(`\nscripts/test.mjs: ${message}\n`);
  process.exit(1);
}

function collect(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (err.code === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) collect(p, out);
    else if (e.isFile() && e.name.endsWith('.test.ts')) out.push(p);
  }
}

function resolveFilter(arg) {
  const bases = [process.env.INIT_CWD, process.cwd(), repoRoot].filter(Boolean);
  for (const base of bases) {
    const p = path.resolve(base, arg);
    if (existsSync(p)) return p;
  }
  return null;
}

const filters = [];
const nodeFlags = [];
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith('--')) nodeFlags.push(arg);
  else filters.push(arg);
}

let files = [];
if (filters.length === 0) {
  for (const ws of WORKSPACES) collect(path.join(repoRoot, ws, 'test'), files);
  if (files.length === 0) {
    fail(`no test files found: looked for ${WORKSPACES.map((w) => `${w}/test/**/*.test.ts`).join(', ')}`);
  }
} else {
  for (const f of filters) {
    const p = resolveFilter(f);
    if (p === null) fail(`filter "${f}" names no existing file or directory`);
    const found = [];
    if (statSync(p).isDirectory()) collect(p, found);
    else found.push(p);
    if (found.length === 0) fail(`filter "${f}" matched no *.test.ts file`);
    files.push(...found);
  }
}
files = [...new Set(files.map((f) => path.relative(repoRoot, f)))].sort();

const unitFiles = files.filter((f) => !f.startsWith(SERIAL_PREFIX));
const serialFiles = files.filter((f) => f.startsWith(SERIAL_PREFIX));

const timeoutOverride = process.env.SLIPWAY_TEST_TIMEOUT_MS;
if (timeoutOverride !== undefined && !/^[1-9][0-9]*$/.test(timeoutOverride)) {
  fail(`SLIPWAY_TEST_TIMEOUT_MS must be a positive integer of milliseconds, got "${timeoutOverride}"`);
}

let activeChild = null;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (activeChild !== null) activeChild.kill(sig);
    process.exit(128 + { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }[sig]);
  });
}

const KEYS = ['tests', 'suites', 'pass', 'fail', 'cancelled', 'skipped', 'todo'];
const SUMMARY_LINE = /^ℹ (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/;
const ANSI = /\x1b\[[0-9;]*m/g;

// Passes the spec reporter's output through and reads its closing "ℹ pass N" lines. (A TAP file
// as a second reporter would be neater, but --test-force-exit can end the runner before a file
// stream is flushed; writes to a pipe are synchronous.)
function summaryReader(counts) {
  let partial = '';
  const take = (line) => {
    const m = SUMMARY_LINE.exec(line.replace(ANSI, '').trimEnd());
    if (m) {
      counts[m[1]] = Number(m[2]);
      counts.found = true;
    }
  };
  return new Transform({
    transform(chunk, _enc, done) {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(take);
      done(null, chunk);
    },
    flush(done) {
      take(partial);
      done();
    },
  });
}

// Runs one `node --test` batch with the spec reporter; resolves with its exit and its counts.
async function runBatch(name, batchFiles, { concurrency, timeoutMs }) {
  const args = [
    '--import', 'tsx',
    '--test',
    '--test-reporter=spec',
    `--test-timeout=${timeoutOverride ?? timeoutMs}`,
    // A file whose tests are done but which still holds a handle (a child it forgot to stop) must
    // not hang the run; on exit the e2e harness kills what it started.
    '--test-force-exit',
    ...(concurrency === undefined ? [] : [`--test-concurrency=${concurrency}`]),
    ...nodeFlags,
    ...batchFiles,
  ];
  process.stdout.write(`\n▶ ${name}: ${batchFiles.length} file(s)${concurrency === 1 ? ', one at a time' : ''}\n`);
  const env = { ...process.env };
  if (process.stdout.isTTY && env.NO_COLOR === undefined && env.FORCE_COLOR === undefined) env.FORCE_COLOR = '1';
  const counts = Object.fromEntries(KEYS.map((k) => [k, 0]));
  counts.found = false;
  const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ['inherit', 'pipe', 'inherit'] });
  activeChild = child;
  const exited = new Promise((resolve) => {
    child.on('error', (error) => resolve({ code: 1, signal: null, error }));
    child.on('exit', (code, signal) => resolve({ code, signal, error: null }));
  });
  try {
    await pipeline(child.stdout, summaryReader(counts), process.stdout, { end: false });
  } catch (err) {
    // Our stdout went away (e.g. `npm test | head`); the exit code still tells the truth.
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
  }
  const r = await exited;
  activeChild = null;
  return { ...r, counts };
}

const started = Date.now();
const batches = [];
if (unitFiles.length > 0) batches.push(['unit', unitFiles, { timeoutMs: UNIT_TIMEOUT_MS }]);
if (serialFiles.length > 0) batches.push(['e2e', serialFiles, { concurrency: 1, timeoutMs: E2E_TIMEOUT_MS }]);

const totals = Object.fromEntries(KEYS.map((k) => [k, 0]));
const problems = [];
for (const [name, batchFiles, opts] of batches) {
  const r = await runBatch(name, batchFiles, opts);
  for (const k of KEYS) totals[k] += r.counts[k];
  if (r.error) problems.push(`${name} batch could not start: ${r.error.message}`);
  else if (r.signal) problems.push(`${name} batch was killed by ${r.signal}`);
  else if (r.code !== 0) problems.push(`${name} batch exited with code ${r.code}`);
  if (!r.counts.found && !r.error) problems.push(`${name} batch printed no summary`);
}

if (totals.tests === 0) problems.push(`no test ran in ${files.length} file(s)`);
if (totals.fail > 0 && problems.length === 0) problems.push(`${totals.fail} test(s) failed`);

const seconds = ((Date.now() - started) / 1000).toFixed(1);
process.stdout.write('\n── slipway test summary (all batches) ──\n');
for (const p of problems) process.stdout.write(`✖ ${p}\n`);
for (const k of KEYS) process.stdout.write(`ℹ ${k} ${totals[k]}\n`);
process.stdout.write(
  `ℹ ${problems.length === 0 ? 'PASS' : 'FAIL'}: pass ${totals.pass}, fail ${totals.fail}, ` +
    `cancelled ${totals.cancelled}, skipped ${totals.skipped}, todo ${totals.todo} ` +
    `(${totals.tests} tests in ${files.length} files, ${seconds}s)\n`,
);
process.exit(problems.length === 0 ? 0 : 1);
