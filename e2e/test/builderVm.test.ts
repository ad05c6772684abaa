// The builder VM's boot configuration (deploy/builder): the user data the CDK app puts in the
// launch templates, rendered by the same program an operator runs, judged by the real tools:
// cloud-init's schema, systemd-analyze on the units as the user data writes them, shellcheck on
// the boot scripts, the agent's own loadConfig on the agent's command line, and the disk and
// BuildKit scripts run for real on a loop device.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '@slipway/agent';
import { NODE_FLAGS } from '@slipway/cli';
import { AGENT_FLAGS } from '../../agent/src/config.js';
import { runCommand } from '../src/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUILDER_DIR = path.join(REPO_ROOT, 'deploy/builder');
const TSX = path.join(REPO_ROOT, 'node_modules/.bin/tsx');
const SCRIPTS = ['cache-disk', 'buildkit-config', 'imds-guard', 'install-builder'];
const UNITS = ['slipway-cache-disk.service', 'slipway-imds-guard.service', 'buildkitd.service', 'slipway-agent.service'];

interface WriteFile {
  path: string;
  permissions: string;
  content: string;
}
interface CloudConfig {
  packages: string[];
  write_files: WriteFile[];
  runcmd: string[][];
}

function which(tool: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const candidate = path.join(dir, tool);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

const missing = (tool: string, pkg = tool): string | undefined =>
  which(tool) ? undefined : `${tool} is not installed (apt-get install ${pkg}; scripts/install-deps.sh does)`;
const notRoot = process.getuid?.() === 0 ? undefined : 'needs root (loop devices, mount, network namespaces)';

let dir: string;
const rendered: Record<'amd64' | 'arm64', { yamlPath: string; config: CloudConfig }> = {} as never;

function file(config: CloudConfig, vmPath: string): WriteFile {
  const found = config.write_files.find((f) => f.path === vmPath);
  assert.ok(found, `the user data writes no ${vmPath}`);
  return found;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-builder-'));
  for (const arch of ['amd64', 'arm64'] as const) {
    const optionsPath = path.join(dir, `${arch}.json`);
    fs.writeFileSync(
      optionsPath,
      JSON.stringify({
        arch,
        gatewayUrl: 'https://slipway.example.com',
        gatewayLinks: 3,
        maxBuilds: 4,
        drainGraceMs: 600_000,
        buildkit: { sha256: 'a'.repeat(64) },
        agentBundle: { url: `https://artifacts.example.com/slipway-agent-${arch}.tar`, sha256: 'b'.repeat(64) },
      }),
    );
    const result = await runCommand(TSX, [path.join(BUILDER_DIR, 'renderUserData.ts'), optionsPath], { cwd: REPO_ROOT, timeoutMs: 60_000 });
    const yamlPath = path.join(dir, `${arch}.yaml`);
    fs.writeFileSync(yamlPath, result.stdout);
    // PyYAML (which cloud-init itself uses) reads the document: what the VM gets is what is checked.
    const json = await runCommand('python3', ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', yamlPath], { timeoutMs: 30_000 });
    rendered[arch] = { yamlPath, config: JSON.parse(json.stdout) as CloudConfig };
  }
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the renderer refuses bad options, naming each problem', async () => {
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ arch: 'amd64', gatewayUrl: 'http://x', gatewayLinks: 0, maxBuilds: 4, drainGraceMs: 1, buildkit: { sha256: 'nope' }, agentBundle: { url: 'https://a/b', sha256: 'c'.repeat(64) } }));
  const result = await runCommand(TSX, [path.join(BUILDER_DIR, 'renderUserData.ts'), bad], { cwd: REPO_ROOT, allowFailure: true, timeoutMs: 60_000 });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /gatewayUrl must be an https:\/\/ URL/);
  assert.match(result.stderr, /gatewayLinks must be an integer from 1 to 8/);
  assert.match(result.stderr, /buildkit.sha256 must be 64 lowercase hex digits/);
});

test('the user data passes `cloud-init schema`, and the schema check does catch a mistake', { skip: missing('cloud-init') }, async () => {
  for (const arch of ['amd64', 'arm64'] as const) {
    const result = await runCommand('cloud-init', ['schema', '--config-file', rendered[arch].yamlPath], { allowFailure: true, timeoutMs: 60_000 });
    assert.equal(result.code, 0, `${arch}: ${result.stdout}${result.stderr}`);
    assert.match(result.stdout, /Valid cloud-config/);
  }
  const broken = path.join(dir, 'broken.yaml');
  fs.writeFileSync(broken, fs.readFileSync(rendered.amd64.yamlPath, 'utf8').replace('package_update: true', 'package_update: 7'));
  const result = await runCommand('cloud-init', ['schema', '--config-file', broken], { allowFailure: true, timeoutMs: 60_000 });
  assert.notEqual(result.code, 0, 'cloud-init schema accepted a wrong type');
});

test('the units the user data writes pass `systemd-analyze verify`, with every command they run present', { skip: missing('systemd-analyze', 'systemd') }, async () => {
  const root = path.join(dir, 'vm-root');
  // The targets and system units a Debian machine has, which the units order themselves against.
  fs.cpSync('/usr/lib/systemd/system', path.join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  for (const f of rendered.amd64.config.write_files) {
    const target = path.join(root, f.path);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, f.content, { mode: Number.parseInt(f.permissions, 8) });
  }
  // What packages and install-builder provide on the VM: node from the nodejs package, the
  // BuildKit binaries linked into /usr/local/bin. Everything else must come from the user data.
  assert.ok(rendered.amd64.config.packages.includes('nodejs'));
  assert.match(file(rendered.amd64.config, '/usr/local/lib/slipway/install-builder').content, /ln -sfn "\$bin" "\/usr\/local\/bin\/\$\(basename "\$bin"\)"/);
  for (const stub of ['/usr/bin/node', '/usr/local/bin/buildkitd']) {
    fs.mkdirSync(path.join(root, path.dirname(stub)), { recursive: true });
    fs.writeFileSync(path.join(root, stub), '#!/bin/sh\n', { mode: 0o755 });
  }
  const verify = (): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    runCommand('systemd-analyze', ['verify', `--root=${root}`, '--man=no', '--generators=no', ...UNITS], { allowFailure: true, timeoutMs: 60_000 });
  const result = await verify();
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr.trim(), '', `systemd-analyze warned:\n${result.stderr}`);

  // It can fail: a unit running a script the user data does not write.
  fs.rmSync(path.join(root, 'usr/local/lib/slipway/buildkit-config'));
  const missingScript = await verify();
  assert.notEqual(missingScript.code, 0);
  assert.match(missingScript.stderr, /buildkit-config/);
});

test("the agent's command line uses only the agent's flags, and its real loadConfig accepts it", () => {
  for (const arch of ['amd64', 'arm64'] as const) {
    const { config } = rendered[arch];
    const unit = file(config, '/etc/systemd/system/slipway-agent.service').content;
    const execStart = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)?.[1];
    assert.ok(execStart, 'slipway-agent.service has no ExecStart');
    const words = execStart.replace(/\\\n/g, ' ').trim().split(/\s+/);
    assert.deepEqual(words.slice(0, 4 + NODE_FLAGS.length), ['/usr/bin/node', ...NODE_FLAGS, '--import', 'tsx', 'agent/src/main.ts']);
    assert.match(unit, /^WorkingDirectory=\/opt\/slipway\/agent$/m);
    assert.match(unit, /^EnvironmentFile=\/etc\/slipway\/agent\.env$/m);

    // systemd expands ${NAME} from the EnvironmentFile; the agent also reads that file as its environment.
    const env: Record<string, string> = {};
    for (const line of file(config, '/etc/slipway/agent.env').content.split('\n')) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
      if (m) env[m[1]!] = m[2]!;
    }
    const argv = words.slice(4 + NODE_FLAGS.length).map((w) =>
      w.replace(/\$\{([A-Z0-9_]+)\}/g, (_, name: string) => {
        assert.ok(name in env, `ExecStart uses \${${name}}, which agent.env does not set`);
        return env[name]!;
      }),
    );
    for (const word of argv.filter((w) => w.startsWith('--'))) {
      assert.ok(word in AGENT_FLAGS, `${word} is not an agent flag (agent/src/config.ts)`);
    }
    for (const name of Object.keys(env)) {
      assert.ok(Object.values(AGENT_FLAGS).includes(name), `agent.env sets ${name}, which the agent does not read`);
    }
    const flag = (name: string): string | undefined => argv[argv.indexOf(name) + 1];
    assert.equal(flag('--identity'), 'imds');
    assert.equal(flag('--token-file'), '/etc/slipway/agent.token');
    assert.ok(!argv.includes('--agent-id'), 'on EC2 the agent id is the instance id');

    // The token file exists on the VM once delivered; here a stand-in at another path.
    const tokenFile = path.join(dir, 'agent.token');
    fs.writeFileSync(tokenFile, 'header.payload.signature\n');
    const loaded = loadConfig(env, argv.map((w) => (w === '/etc/slipway/agent.token' ? tokenFile : w)));
    assert.equal(loaded.identitySource, 'imds');
    assert.deepEqual(loaded.gatewayUrls.map(String), ['https://slipway.example.com/']);
    assert.equal(loaded.gatewayLinks, 3);
    assert.equal(loaded.maxBuilds, 4);
    assert.equal(loaded.drainGraceMs, 600_000);
    assert.equal(loaded.upstream.kind, 'buildkitd');
    // The socket the agent dials is the one buildkit-config makes BuildKit listen on.
    assert.match(file(config, '/usr/local/lib/slipway/buildkit-config').content, /address = \[ "unix:\/\/\/run\/buildkit\/buildkitd\.sock" \]/);
    assert.equal(flag('--upstream'), 'buildkitd:unix:///run/buildkit/buildkitd.sock');
    // systemd must give a draining agent its whole grace before killing it.
    const stopMinutes = Number(/^TimeoutStopSec=(\d+)min$/m.exec(unit)?.[1]);
    assert.ok(stopMinutes * 60_000 > loaded.drainGraceMs, `TimeoutStopSec=${stopMinutes}min does not cover the ${loaded.drainGraceMs} ms drain`);
    // install-builder makes the agent's user, and the install env says which architecture to expect.
    assert.match(unit, /^User=slipway$/m);
    assert.match(file(config, '/etc/slipway/install.env').content, new RegExp(`^SLIPWAY_ARCH=${arch}$`, 'm'));
  }
});

test('the boot scripts pass shellcheck', { skip: missing('shellcheck') }, async () => {
  const result = await runCommand('shellcheck', SCRIPTS.map((s) => path.join(BUILDER_DIR, 'libexec', s)), { allowFailure: true, timeoutMs: 60_000 });
  assert.equal(result.code, 0, result.stdout + result.stderr);
});

test('cache-disk formats a blank disk once and mounts it again after a stop/start without reformatting; buildkit-config sizes GC from it', { skip: notRoot ?? missing('losetup', 'mount') ?? missing('mkfs.ext4', 'e2fsprogs') }, async () => {
  const image = path.join(dir, 'cache.img');
  fs.writeFileSync(image, '');
  fs.truncateSync(image, 256 * 1024 * 1024);
  const loop = (await runCommand('losetup', ['--find', '--show', image], { timeoutMs: 30_000 })).stdout.trim();
  const mountPoint = path.join(dir, 'buildkit');
  // A label of its own, so the test never finds a real cache volume on this machine.
  const label = `sw-test-${process.pid}`.slice(0, 16);
  const cacheDisk = (device: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    runCommand(path.join(BUILDER_DIR, 'libexec/cache-disk'), [mountPoint], {
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', SLIPWAY_CACHE_DEVICE: device, SLIPWAY_CACHE_LABEL: label },
      allowFailure: true,
      timeoutMs: 60_000,
    });
  try {
    const first = await cacheDisk(loop);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /formatting/);
    const findmnt = await runCommand('findmnt', ['-no', 'SOURCE', mountPoint], { timeoutMs: 10_000 });
    assert.equal(findmnt.stdout.trim(), loop);
    fs.writeFileSync(path.join(mountPoint, 'cache-marker'), 'warm');

    const config = path.join(dir, 'buildkitd.toml');
    const gc = await runCommand(path.join(BUILDER_DIR, 'libexec/buildkit-config'), [mountPoint, config], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SLIPWAY_SOCKET_GROUP: 'root' },
      timeoutMs: 30_000,
    });
    assert.equal(gc.code, 0, gc.stderr);
    const size = Number((await runCommand('df', ['-B1', '--output=size', mountPoint], { timeoutMs: 10_000 })).stdout.trim().split('\n').pop());
    // Python's own TOML parser reads it, as BuildKit's would.
    const toml = JSON.parse(
      (await runCommand('python3', ['-c', 'import json,sys,tomllib; print(json.dumps(tomllib.load(open(sys.argv[1],"rb"))))', config], { timeoutMs: 30_000 })).stdout,
    ) as { root: string; grpc: { address: string[]; gid: number }; worker: { oci: { gc: boolean; gckeepstorage: number; gcpolicy: Array<{ all?: boolean; keepBytes: number; filters?: string[] }> }; containerd: { enabled: boolean } } };
    assert.equal(toml.root, mountPoint);
    assert.deepEqual(toml.grpc.address, ['unix:///run/buildkit/buildkitd.sock'], 'BuildKit listens on nothing but its unix socket');
    assert.equal(toml.grpc.gid, 0);
    assert.equal(toml.worker.oci.gc, true);
    assert.equal(toml.worker.oci.gckeepstorage, Math.floor((size * 80) / 100));
    assert.equal(toml.worker.oci.gcpolicy.at(-1)?.all, true);
    assert.equal(toml.worker.oci.gcpolicy.at(-1)?.keepBytes, Math.floor((size * 80) / 100));
    assert.equal(toml.worker.oci.gcpolicy[0]?.keepBytes, Math.floor((size * 10) / 100));
    assert.ok(toml.worker.oci.gcpolicy.every((p) => p.keepBytes > 0 && p.keepBytes < size));
    assert.equal(toml.worker.containerd.enabled, false);

    // Stop/start: the disk is unmounted and found again by its label, its data intact.
    await runCommand('umount', [mountPoint], { timeoutMs: 30_000 });
    const again = await cacheDisk('/dev/null-never-used');
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /reusing/);
    assert.equal(fs.readFileSync(path.join(mountPoint, 'cache-marker'), 'utf8'), 'warm', 'the cache was reformatted');
    await runCommand('umount', [mountPoint], { timeoutMs: 30_000 });

    // A disk carrying someone else's filesystem is never formatted.
    await runCommand('mkfs.ext4', ['-q', '-L', 'not-ours', loop], { timeoutMs: 60_000 });
    const refused = await cacheDisk(loop);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /refusing to format/);
  } finally {
    await runCommand('umount', [mountPoint], { allowFailure: true, timeoutMs: 30_000 });
    await runCommand('losetup', ['-d', loop], { allowFailure: true, timeoutMs: 30_000 });
  }
});

test('imds-guard lets only the agent user reach the instance metadata service', { skip: notRoot ?? missing('nft', 'nftables') ?? missing('unshare', 'util-linux') }, async () => {
  // In a network namespace of its own, so this machine's firewall is never touched.
  const script = `${path.join(BUILDER_DIR, 'libexec/imds-guard')} up && ${path.join(BUILDER_DIR, 'libexec/imds-guard')} up && nft list table inet slipway_imds_guard`;
  const result = await runCommand('unshare', ['--net', 'sh', '-c', script], {
    env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', SLIPWAY_IMDS_USER: 'nobody' },
    allowFailure: true,
    timeoutMs: 30_000,
  });
  assert.equal(result.code, 0, result.stderr);
  const nobody = (await runCommand('id', ['-u', 'nobody'], { timeoutMs: 10_000 })).stdout.trim();
  assert.match(result.stdout, new RegExp(`ip daddr 169\\.254\\.169\\.254 meta skuid != ${nobody} counter packets \\d+ bytes \\d+ reject`));
  assert.match(result.stdout, new RegExp(`ip6 daddr fd00:ec2::254 meta skuid != ${nobody} counter packets \\d+ bytes \\d+ reject`));
  // Applied twice, still one rule each: a restart of the unit does not pile them up.
  assert.equal(result.stdout.match(/169\.254\.169\.254/g)?.length, 1);
});
