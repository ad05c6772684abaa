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
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

const scratch = mkdtempSync(path.join(tmpdir(), 'slipway-test-'));
let activeChild = null;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (activeChild !== null) activeChild.kill(sig);
    rmSync(scratch, { recursive: true, force: true });
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 })[sig]);
  });
}

// Runs one `node --test` batch: spec output to the terminal, TAP into a file whose trailing
// "# pass N" lines give the counts for the combined summary.
function runBatch(name, batchFiles, { concurrency, timeoutMs }) {
  const tapFile = path.join(scratch, `${name}.tap`);
  const args = [
    '--import', 'tsx',
    '--test',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
    `--test-timeout=${timeoutOverride ?? timeoutMs}`,
    ...(concurrency === undefined ? [] : [`--test-concurrency=${concurrency}`]),
    ...nodeFlags,
    ...batchFiles,
  ];
  process.stdout.write(`\n▶ ${name}: ${batchFiles.length} file(s)${concurrency === 1 ? ', one at a time' : ''}\n`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: 'inherit' });
    activeChild = child;
    child.on('error', (err) => {
      activeChild = null;
      resolve({ code: 1, signal: null, error: err, tapFile });
    });
    child.on('exit', (code, signal) => {
      activeChild = null;
      resolve({ code, signal, error: null, tapFile });
    });
  });
}

const KEYS = ['tests', 'suites', 'pass', 'fail', 'cancelled', 'skipped', 'todo'];
function readCounts(tapFile) {
  const counts = Object.fromEntries(KEYS.map((k) => [k, 0]));
  let found = false;
  let text = '';
  try {
    text = readFileSync(tapFile, 'utf8');
  } catch {
    return { counts, found };
  }
  // Only top-level summary lines ("# pass 3" at column 0); nested diagnostics are indented.
  for (const line of text.split('\n')) {
    const m = /^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(line);
    if (m) {
      counts[m[1]] = Number(m[2]);
      found = true;
    }
  }
  return { counts, found };
}

const started = Date.now();
const batches = [];
if (unitFiles.length > 0) batches.push(['unit', unitFiles, { timeoutMs: UNIT_TIMEOUT_MS }]);
if (serialFiles.length > 0) batches.push(['e2e', serialFiles, { concurrency: 1, timeoutMs: E2E_TIMEOUT_MS }]);

const totals = Object.fromEntries(KEYS.map((k) => [k, 0]));
const problems = [];
for (const [name, batchFiles, opts] of batches) {
  const r = await runBatch(name, batchFiles, opts);
  const { counts, found } = readCounts(r.tapFile);
  for (const k of KEYS) totals[k] += counts[k];
  if (r.error) problems.push(`${name} batch could not start: ${r.error.message}`);
  else if (r.signal) problems.push(`${name} batch was killed by ${r.signal}`);
  else if (r.code !== 0) problems.push(`${name} batch exited with code ${r.code}`);
  if (!found && !r.error) problems.push(`${name} batch produced no TAP summary`);
}
rmSync(scratch, { recursive: true, force: true });

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
