// `slipway configure-docker` in a temporary DOCKER_CONFIG that already holds a user's settings
// (credentials in config.json, another buildx builder selected), with no docker CLI on PATH: the
// buildx instance file, the global selection, the alias and the plugin are exactly as specified;
// a second run changes nothing; the daemon's per-platform sockets carry BuildKit's gRPC to an agent
// of that platform, and its worker comes back when killed; --uninstall restores every original
// file byte for byte.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  SLIPWAY_BIN,
  listWorkers,
  runCommand,
  startCountingRelay,
  startDockerd,
  startStack,
  tempDir,
  type CountingRelay,
  type Dockerd,
  type SlipwayStack,
  type TempDir,
} from '@slipway/e2e';
import { NODE_FLAGS } from '@slipway/cli';

let stack: SlipwayStack;
let dockerd: Dockerd;
let scratch: TempDir;
const relays: Partial<Record<'amd64' | 'arm64', CountingRelay>> = {};
let env: Record<string, string>;
let dockerConfig: string;
let daemonDir: string;

// What the user had before: a login, a context choice, another builder selected. Formatted by
// hand, as no tool would, so that a rewrite could not pass for the original.
const ORIGINAL_CONFIG = '{\n  "auths": { "registry.example:5000": { "auth": "dXNlcjpwYXNz" } },\n  "currentContext": "default",\n  "aliases": { "compose": "compose" }\n}\n';
const ORIGINAL_CURRENT = '{"Key":"unix:///var/run/docker.sock","Name":"other","Global":false}';
const ORIGINAL_OTHER = '{"Name":"other","Driver":"remote","Nodes":[{"Name":"other0","Endpoint":"tcp://10.0.0.1:1234","Platforms":null,"DriverOpts":null,"Flags":null,"Files":null}],"Dynamic":false}';

before(async () => {
  scratch = await tempDir('configure-docker');
  dockerd = await startDockerd({ flavor: '20.10' });
  stack = await startStack();
  // Both platforms' agents reach the same dockerd, each through a relay that counts its connections.
  for (const arch of ['amd64', 'arm64'] as const) {
    relays[arch] = await startCountingRelay(path.join(scratch.path, `relay-${arch}.sock`), dockerd.socketPath);
    await stack.startAgent({ agentId: `agent-${arch}`, platform: `linux/${arch}`, upstream: `dockerd:${relays[arch]!.address}` });
  }
  dockerConfig = path.join(scratch.path, 'docker-config');
  fs.mkdirSync(path.join(dockerConfig, 'buildx', 'instances'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dockerConfig, 'config.json'), ORIGINAL_CONFIG, { mode: 0o644 });
  fs.writeFileSync(path.join(dockerConfig, 'buildx', 'current'), ORIGINAL_CURRENT, { mode: 0o600 });
  fs.writeFileSync(path.join(dockerConfig, 'buildx', 'instances', 'other'), ORIGINAL_OTHER, { mode: 0o600 });
  const emptyBin = path.join(scratch.path, 'bin');
  fs.mkdirSync(emptyBin);
  env = {
    // No docker CLI anywhere: configure-docker must do without buildx.
    PATH: emptyBin,
    HOME: path.join(scratch.path, 'home'),
    XDG_CONFIG_HOME: path.join(scratch.path, 'xdg'),
    DOCKER_CONFIG: dockerConfig,
    SLIPWAY_GATEWAY: stack.gatewayUrl,
    SLIPWAY_TOKEN: await stack.clientToken('demo'),
    SLIPWAY_CA_CERT: stack.caPath,
  };
  daemonDir = path.join(scratch.path, 'xdg', 'slipway', 'docker');
});

after(async () => {
  // Whatever a failed test left running.
  if (env) await slipway(['daemon', 'stop']).catch(() => undefined);
  await stack?.close();
  for (const relay of Object.values(relays)) await relay?.close();
  await dockerd?.stop();
  await scratch?.remove();
});

function slipway(args: string[], extraEnv: Record<string, string> = {}) {
  return runCommand(process.execPath, [SLIPWAY_BIN, ...args], { env: { ...env, ...extraEnv }, allowFailure: true, timeoutMs: 120_000 });
}

/** Every file and directory under root: path -> mode and content (directories: mode only). */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      const mode = (fs.lstatSync(full).mode & 0o7777).toString(8);
      if (entry.isDirectory()) {
        out.set(`${path.relative(root, full)}/`, mode);
        walk(full);
      } else out.set(path.relative(root, full), `${mode} ${fs.readFileSync(full).toString('base64')}`);
    }
  };
  walk(root);
  return out;
}

function socketOf(platform: 'amd64' | 'arm64'): string {
  return path.join(daemonDir, `linux-${platform}.sock`);
}

let original: Map<string, string>;
let configured: Map<string, string>;

test('configure-docker writes the builder, the global selection, the alias and the plugin exactly, and says buildx is missing', async () => {
  original = snapshot(dockerConfig);
  const result = await slipway(['configure-docker']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /no docker CLI on PATH: nothing can use the builder yet/);
  assert.match(result.stderr, /Still working: the daemon's sockets speak BuildKit's API/);

  const native = process.arch === 'arm64' ? ['arm64', 'amd64'] : ['amd64', 'arm64'];
  const node = (arch: string): string =>
    `{"Name":"slipway-${arch}","Endpoint":"unix://${socketOf(arch as 'amd64')}","Platforms":[{"architecture":"${arch}","os":"linux"}],"DriverOpts":{"default-load":"true"},"Flags":null,"Files":null}`;
  const instance = path.join(dockerConfig, 'buildx', 'instances', 'slipway');
  assert.equal(fs.readFileSync(instance, 'utf8'), `{"Name":"slipway","Driver":"remote","Nodes":[${native.map(node).join(',')}],"Dynamic":false}`);
  assert.equal(fs.statSync(instance).mode & 0o777, 0o600);
  assert.equal(fs.readFileSync(path.join(dockerConfig, 'buildx', 'current'), 'utf8'), '{"Key":"unix:///var/run/docker.sock","Name":"slipway","Global":true}');
  assert.equal(fs.readFileSync(path.join(dockerConfig, 'buildx', 'instances', 'other'), 'utf8'), ORIGINAL_OTHER, 'the other builder is left alone');

  const configText = fs.readFileSync(path.join(dockerConfig, 'config.json'), 'utf8');
  assert.deepEqual(JSON.parse(configText), {
    auths: { 'registry.example:5000': { auth: 'dXNlcjpwYXNz' } },
    currentContext: 'default',
    aliases: { compose: 'compose', builder: 'buildx' },
  });
  assert.match(configText, /^\{\n\t"auths"/, "written as the Docker CLI writes it (tabs)");
  assert.equal(fs.statSync(path.join(dockerConfig, 'config.json')).mode & 0o777, 0o644, 'its mode kept');

  const plugin = path.join(dockerConfig, 'cli-plugins', 'docker-slipway');
  assert.equal(fs.statSync(plugin).mode & 0o777, 0o755);
  const metadata = await runCommand(plugin, ['docker-cli-plugin-metadata'], { env });
  assert.deepEqual(JSON.parse(metadata.stdout), { SchemaVersion: '0.1.0', Vendor: 'Slipway', Version: '0.1.0', ShortDescription: "Build on Slipway's remote builders" });

  for (const arch of ['amd64', 'arm64'] as const) {
    const stat = fs.statSync(socketOf(arch));
    assert.ok(stat.isSocket(), `${socketOf(arch)} is a socket`);
    assert.equal(stat.mode & 0o777, 0o600, 'only its user may connect');
  }
  assert.equal(fs.statSync(daemonDir).mode & 0o777, 0o700);
  configured = snapshot(dockerConfig);
});

test('running it again changes nothing', async () => {
  const result = await slipway(['configure-docker']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal((result.stderr.match(/already set/g) ?? []).length, 4, result.stderr);
  assert.match(result.stderr, /daemon running/);
  assert.deepEqual(snapshot(dockerConfig), configured);
});

test("each platform's socket carries BuildKit's ListWorkers to an agent of that platform", async () => {
  for (const arch of ['amd64', 'arm64'] as const) {
    const other = arch === 'amd64' ? 'arm64' : 'amd64';
    const mine = relays[arch]!.connections;
    const theirs = relays[other]!.connections;
    const workers = await listWorkers(`unix://${socketOf(arch)}`, { deadlineMs: 30_000 });
    assert.ok(workers.some((w) => w.platforms.includes('linux/amd64')), "dockerd's workers answered");
    assert.ok(relays[arch]!.connections > mine, `the ${arch} agent's upstream was used`);
    assert.equal(relays[other]!.connections, theirs, `the ${other} agent's was not`);
  }
});

test('a killed worker is replaced; a killed daemon is started again on demand', async () => {
  const stateFile = path.join(daemonDir, 'daemon.json');
  const before = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { supervisorPid: number; workerPid: number; workerStarts: number };
  // Both run with the flags every Slipway program runs with, ahead of the script.
  for (const pid of [before.supervisorPid, before.workerPid]) {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(argv.slice(1, 1 + NODE_FLAGS.length), [...NODE_FLAGS], argv.join(' '));
    assert.match(argv[1 + NODE_FLAGS.length]!, /bin\/slipway\.mjs$/);
  }
  process.kill(before.workerPid, 'SIGKILL');
  // The socket keeps accepting while the worker is replaced; the call waits its turn.
  const workers = await listWorkers(`unix://${socketOf('amd64')}`, { deadlineMs: 30_000 });
  assert.ok(workers.length > 0);
  const after = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { supervisorPid: number; workerPid: number; workerStarts: number };
  assert.equal(after.supervisorPid, before.supervisorPid);
  assert.notEqual(after.workerPid, before.workerPid);
  assert.equal(after.workerStarts, before.workerStarts + 1);

  process.kill(after.supervisorPid, 'SIGKILL');
  process.kill(after.workerPid, 'SIGKILL');
  const status = await slipway(['daemon', 'status', '--json']);
  assert.equal((JSON.parse(status.stdout) as { running: boolean }).running, false);
  const started = await slipway(['daemon', 'start']);
  assert.equal(started.code, 0, started.stderr);
  assert.match(started.stderr, /Started the Slipway daemon/);
  assert.ok((await listWorkers(`unix://${socketOf('arm64')}`, { deadlineMs: 30_000 })).length > 0);
});

test('--uninstall restores the original files byte for byte and stops the daemon', async () => {
  const result = await slipway(['configure-docker', '--uninstall']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /Slipway daemon stopped/);
  assert.deepEqual(snapshot(dockerConfig), original);
  assert.equal(fs.existsSync(daemonDir), false, 'sockets, state and record gone');
  const again = await slipway(['configure-docker', '--uninstall']);
  assert.equal(again.code, 0);
  assert.match(again.stderr, /Nothing to undo/);
});
