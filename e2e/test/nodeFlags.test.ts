// Every launcher of a Slipway program starts node with NODE_FLAGS (cli/src/nodeFlags.ts): the bin
// scripts run as programs, the systemd units and `npm start`. (The Dockerfiles' ENTRYPOINT is
// checked in dockerfiles.test.ts, the rendered agent unit in builderVm.test.ts, the daemon's
// processes in configureDocker.test.ts, the CLI bundle in cli/test/cliBundle.test.ts.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launcherPreamble, NODE_FLAGS } from '@slipway/cli';
import { tempDir, type TempDir } from '../src/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BINS = ['cli/bin/slipway.mjs', 'gateway/bin/slipway-gateway.mjs', 'agent/bin/slipway-agent.mjs'];

let scratch: TempDir;
let probe: string;

before(async () => {
  scratch = await tempDir('node-flags');
  // Loaded through NODE_OPTIONS into the node the launcher starts: it records that process's own
  // command-line flags (NODE_OPTIONS' are not among them) before the program runs.
  probe = path.join(scratch.path, 'probe.cjs');
  fs.writeFileSync(probe, "require('node:fs').writeFileSync(process.env.NODE_FLAGS_PROBE_OUT, JSON.stringify(process.execArgv));\n");
});

after(async () => {
  await scratch?.remove();
});

/** Runs `file` as a program (through its first line, as a shell would) and returns node's flags. */
function runAsProgram(file: string, args: string[]): Promise<{ flags: string[]; code: number; stdout: string; stderr: string }> {
  const out = path.join(scratch.path, `${path.basename(file)}.json`);
  fs.rmSync(out, { force: true });
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { cwd: scratch.path, env: { PATH: process.env['PATH'] ?? '', HOME: scratch.path, NODE_OPTIONS: `--require ${probe}`, NODE_FLAGS_PROBE_OUT: out }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : undefined;
        if (code === undefined) return reject(new Error(`${file} ${args.join(' ')} did not run: ${err?.message}\n${stderr}`));
        resolve({ flags: JSON.parse(fs.readFileSync(out, 'utf8')) as string[], code, stdout, stderr });
      },
    );
  });
}

for (const bin of BINS) {
  test(`${bin}, run as a program, starts node with the flags and runs the program`, async () => {
    const file = path.join(REPO_ROOT, bin);
    assert.ok(fs.readFileSync(file, 'utf8').startsWith(launcherPreamble()), 'its first lines are the launcher preamble');
    assert.ok((fs.statSync(file).mode & 0o111) !== 0, 'it is executable');
    const { flags, code, stdout, stderr } = await runAsProgram(file, ['--help']);
    assert.equal(code, 0, stderr);
    assert.deepEqual(flags, [...NODE_FLAGS]);
    // The program itself ran (node read the shell line as a string and a comment).
    assert.match(stdout, /^Usage: /m);
  });
}

test('a launcher passes its arguments through unchanged, spaces, quotes and $ included', async () => {
  const odd = `no such'command  "$HOME" *`;
  const { flags, code, stderr } = await runAsProgram(path.join(REPO_ROOT, 'cli/bin/slipway.mjs'), [odd]);
  assert.deepEqual(flags, [...NODE_FLAGS]);
  assert.equal(code, 2);
  assert.ok(stderr.includes(`unknown command '${odd}'`), stderr);
});

test("the gateway's systemd unit starts node with the flags", () => {
  const unit = fs.readFileSync(path.join(REPO_ROOT, 'deploy/aws/gateway/slipway-gateway.service'), 'utf8');
  const execStart = /^ExecStart=(.*)$/m.exec(unit)?.[1];
  assert.deepEqual(execStart?.split(/\s+/), ['/usr/bin/node', ...NODE_FLAGS, '--import', 'tsx', 'gateway/src/main.ts']);
});

test('npm start starts node with the flags', () => {
  const scripts = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  assert.deepEqual(scripts['start']?.split(/\s+/), ['node', ...NODE_FLAGS, '--import', 'tsx', 'deploy/local/start.ts']);
});
