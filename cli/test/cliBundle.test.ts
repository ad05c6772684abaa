import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleCli, type CliBundle } from '../tools/cliBundle.js';
import { CLI_VERSION } from '../src/cliVersion.js';
import { launcherPreamble, NODE_FLAGS } from '../src/nodeFlags.js';

// The bundled CLI (npm run build:cli, and what the build bench measures) run as a user would run
// it: from a folder outside the repository, so nothing resolves through the sources by accident.

const CLI_PACKAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../package.json');

async function withBundle(run: (bundle: CliBundle, cwd: string) => void): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'slipway-cli-bundle-'));
  try {
    run(await bundleCli(path.join(dir, 'out')), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function slipway(bundle: CliBundle, cwd: string, ...args: string[]) {
  // No SLIPWAY_* from the developer's shell, and no HOME with stored credentials.
  const result = spawnSync(process.execPath, [bundle.script, ...args], { cwd, env: { PATH: process.env['PATH'] ?? '', HOME: cwd }, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('the CLI version is the package version', () => {
  assert.equal(CLI_VERSION, (JSON.parse(readFileSync(CLI_PACKAGE, 'utf8')) as { version: string }).version);
});

test('the bundled CLI runs: --version, build --help, the Docker CLI plugin metadata, a configuration error', async () => {
  await withBundle((bundle, cwd) => {
    const version = slipway(bundle, cwd, '--version');
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout, `slipway ${CLI_VERSION}\n`);

    const help = slipway(bundle, cwd, 'build', '--help');
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: slipway build CONTEXT/);
    assert.match(help.stdout, /--platform/);

    const metadata = slipway(bundle, cwd, 'docker-cli-plugin', 'docker-cli-plugin-metadata');
    assert.equal(metadata.code, 0, metadata.stderr);
    assert.equal((JSON.parse(metadata.stdout) as { Version: string }).Version, CLI_VERSION);

    // Exit code 2 and the message of the CLI's own error, not a crash of the bundle.
    const noGateway = slipway(bundle, cwd, 'build', cwd);
    assert.equal(noGateway.code, 2, noGateway.stderr);
    assert.match(noGateway.stderr, /^slipway: error: invalid configuration:\n[^]*\n {2}- SLIPWAY_GATEWAY \(or --gateway\) is required/);
  });
});

test('the bundle, run as a program, starts node with the flags every Slipway program runs with', async () => {
  await withBundle((bundle, cwd) => {
    assert.ok(readFileSync(bundle.script, 'utf8').startsWith(launcherPreamble()));
    // Records the started node's own command-line flags (NODE_OPTIONS' are not among them).
    const probe = path.join(cwd, 'probe.cjs');
    const out = path.join(cwd, 'flags.json');
    writeFileSync(probe, "require('node:fs').writeFileSync(process.env.NODE_FLAGS_PROBE_OUT, JSON.stringify(process.execArgv));\n");
    const result = spawnSync(bundle.script, ['--version'], {
      cwd,
      env: { PATH: process.env['PATH'] ?? '', HOME: cwd, NODE_OPTIONS: `--require ${probe}`, NODE_FLAGS_PROBE_OUT: out },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(result.status, 0, `${result.error?.message ?? ''}${result.stderr}`);
    assert.equal(result.stdout, `slipway ${CLI_VERSION}\n`);
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), [...NODE_FLAGS]);
  });
});

test("the bundled CLI loads BuildKit's .proto files from its own folder, not from the sources", async () => {
  await withBundle((bundle, cwd) => {
    // The build's codecs are made as the bundle loads (fsutilPacket.ts): any command shows it.
    assert.equal(slipway(bundle, cwd, '--version').code, 0);
    renameSync(path.join(bundle.dir, 'moby'), path.join(bundle.dir, 'moby.away'));
    const broken = slipway(bundle, cwd, '--version');
    assert.notEqual(broken.code, 0);
    // Had it found them anywhere else (the repository's proto/), it would have run.
    assert.match(broken.stderr, /ENOENT[^\n]*moby\/buildkit\/v1\/control\.proto/);
  });
});
