// The real tools, as a user types them, after `slipway configure-docker`: Debian 13's buildx and
// Compose plugins in a private DOCKER_CONFIG, the Docker CLI, and a local dockerd 26 (containerd
// image store) that doubles as the builders' BuildKit, each platform's agent reaching it through a
// relay that counts connections. `docker buildx build` with no --builder, plain `docker build`
// (through the builder alias), `docker compose build` of two services and `docker slipway build`
// all build through Slipway, and --load puts the images into the local dockerd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  DEBIAN13_ROOT,
  SLIPWAY_BIN,
  buildxUnavailableReason,
  makeBusyboxContext,
  prepareBuildx,
  runCommand,
  startCountingRelay,
  startDockerd,
  startStack,
  tempDir,
  type Buildx,
  type CountingRelay,
  type Dockerd,
  type SlipwayStack,
  type TempDir,
} from '@slipway/e2e';

const COMPOSE_PLUGIN = `${DEBIAN13_ROOT}/usr/libexec/docker/cli-plugins/docker-compose`;
const skip = buildxUnavailableReason() ?? (fs.existsSync(COMPOSE_PLUGIN) ? false : `docker-compose plugin missing at ${COMPOSE_PLUGIN} (run scripts/install-deps.sh as root)`);

const DOCKERFILE = (word: string): string => `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /out && echo ${word} > /out/built.txt"]
`;

let stack: SlipwayStack;
let dockerd: Dockerd;
let scratch: TempDir;
let buildx: Buildx;
let env: NodeJS.ProcessEnv;
let originalFiles: Map<string, string>;
const relays: Partial<Record<'amd64' | 'arm64', CountingRelay>> = {};

before(async () => {
  if (skip) return;
  scratch = await tempDir('docker-tools');
  dockerd = await startDockerd({ flavor: '26' });
  stack = await startStack();
  for (const arch of ['amd64', 'arm64'] as const) {
    relays[arch] = await startCountingRelay(path.join(scratch.path, `relay-${arch}.sock`), dockerd.socketPath);
    await stack.startAgent({ agentId: `tools-${arch}`, platform: `linux/${arch}`, upstream: `dockerd:${relays[arch]!.address}` });
  }
  buildx = await prepareBuildx(path.join(scratch.path, 'buildx'));
  fs.symlinkSync(COMPOSE_PLUGIN, path.join(buildx.dockerConfig, 'cli-plugins', 'docker-compose'));
  env = {
    ...buildx.env,
    DOCKER_HOST: dockerd.host,
    HOME: path.join(scratch.path, 'home'),
    XDG_CONFIG_HOME: path.join(scratch.path, 'xdg'),
    SLIPWAY_GATEWAY: stack.gatewayUrl,
    SLIPWAY_TOKEN: await stack.clientToken('demo'),
    SLIPWAY_CA_CERT: stack.caPath,
    // Agents' BuildKit is dockerd's: RUN steps use its default bridge.
    BUILDX_NO_DEFAULT_ATTESTATIONS: '1',
  };
  originalFiles = files(buildx.dockerConfig);
});

after(async () => {
  if (env) await slipway(['daemon', 'stop']).catch(() => undefined);
  await stack?.close();
  for (const relay of Object.values(relays)) await relay?.close();
  await dockerd?.stop();
  await scratch?.remove();
});

function slipway(args: string[]) {
  return runCommand(process.execPath, [SLIPWAY_BIN, ...args], { env, allowFailure: true, timeoutMs: 120_000 });
}

function docker(args: string[], cwd?: string) {
  return runCommand(buildx.docker, args, { env, timeoutMs: 300_000, ...(cwd ? { cwd } : {}) });
}

/** Regular files (symlinks as their target) under root, with contents. */
function files(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isSymbolicLink()) out.set(path.relative(root, full), `-> ${fs.readlinkSync(full)}`);
      else out.set(path.relative(root, full), `${(fs.statSync(full).mode & 0o7777).toString(8)} ${fs.readFileSync(full).toString('base64')}`);
    }
  };
  walk(root);
  return out;
}

async function imageBuilt(tag: string, word: string): Promise<void> {
  const inspected = await docker(['image', 'inspect', tag, '--format', '{{.Architecture}}']);
  assert.equal(inspected.stdout.trim(), process.arch === 'arm64' ? 'arm64' : 'amd64', `${tag} is in the local dockerd`);
  const run = await docker(['run', '--rm', tag, '/bin/busybox', 'cat', '/out/built.txt']);
  assert.equal(run.stdout.trim(), word, `${tag} holds what its RUN step wrote`);
}

/** Runs `build`, and checks that the native platform's agent carried it. */
async function throughSlipway(build: () => Promise<unknown>): Promise<void> {
  const native = process.arch === 'arm64' ? 'arm64' : 'amd64';
  const before = relays[native]!.connections;
  await build();
  assert.ok(relays[native]!.connections > before, `the ${native} agent's BuildKit was used (${before} -> ${relays[native]!.connections} connections)`);
}

test('configure-docker makes the slipway builder current, as docker buildx inspect confirms', { skip }, async () => {
  const result = await slipway(['configure-docker']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /✔ docker buildx inspect: current builder slipway \(remote driver\)/);
  assert.match(result.stderr, /slipway-amd64: running/);
  // Debian 13's buildx is 0.13: precisely what that lacks is said.
  assert.match(result.stderr, /buildx 0\.13\.\d+ has no default-load for the remote driver \(it came in 0\.14\)/);
  const ls = await docker(['buildx', 'ls']);
  assert.match(ls.stdout, /^slipway\*?\s+remote/m);
});

test('docker buildx build with no --builder builds through Slipway and --load puts the image into the local dockerd', { skip }, async () => {
  const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-buildx'), { dockerfile: DOCKERFILE('buildx') });
  await throughSlipway(() => docker(['buildx', 'build', '--progress', 'plain', '--load', '-t', 'slipway-e2e/buildx:1', context.dir]));
  await imageBuilt('slipway-e2e/buildx:1', 'buildx');
});

test('plain docker build goes through the builder alias to Slipway', { skip }, async () => {
  const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-plain'), { dockerfile: DOCKERFILE('plain') });
  await throughSlipway(() => docker(['build', '--progress', 'plain', '--load', '-t', 'slipway-e2e/plain:1', context.dir]));
  await imageBuilt('slipway-e2e/plain:1', 'plain');
});

test("the Docker CLI 20.10's docker build, which runs buildx only through the alias, builds through Slipway too", { skip: skip || (fs.existsSync('/usr/bin/docker') ? false : 'no Docker CLI 20.10 at /usr/bin/docker') }, async () => {
  const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-old-cli'), { dockerfile: DOCKERFILE('old-cli') });
  await throughSlipway(() => runCommand('/usr/bin/docker', ['build', '--progress', 'plain', '--load', '-t', 'slipway-e2e/old-cli:1', context.dir], { env, timeoutMs: 300_000 }));
  await imageBuilt('slipway-e2e/old-cli:1', 'old-cli');
});

test('docker compose build of two services builds both through Slipway into the local dockerd', { skip }, async () => {
  const project = path.join(scratch.path, 'compose');
  await makeBusyboxContext(path.join(project, 'web'), { dockerfile: DOCKERFILE('web') });
  await makeBusyboxContext(path.join(project, 'worker'), { dockerfile: DOCKERFILE('worker') });
  fs.writeFileSync(
    path.join(project, 'compose.yaml'),
    ['services:', '  web:', '    build: ./web', '    image: slipway-e2e/web:1', '  worker:', '    build: ./worker', '    image: slipway-e2e/worker:1', ''].join('\n'),
  );
  await throughSlipway(() => docker(['compose', '--progress', 'plain', 'build'], project));
  await imageBuilt('slipway-e2e/web:1', 'web');
  await imageBuilt('slipway-e2e/worker:1', 'worker');
});

test('docker slipway build runs buildx on the slipway builder', { skip }, async () => {
  const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-plugin'), { dockerfile: DOCKERFILE('plugin') });
  await throughSlipway(() => docker(['slipway', 'build', '--progress', 'plain', '--load', '-t', 'slipway-e2e/plugin:1', context.dir]));
  await imageBuilt('slipway-e2e/plugin:1', 'plugin');
  const help = await docker(['--help']);
  assert.match(help.stdout, /slipway\*?\s+Build on Slipway's remote builders/, 'docker lists the plugin');
});

test('--uninstall restores every file buildx and the Docker CLI had before', { skip }, async () => {
  const result = await slipway(['configure-docker', '--uninstall']);
  assert.equal(result.code, 0, result.stderr);
  const now = files(buildx.dockerConfig);
  for (const [file, content] of originalFiles) assert.equal(now.get(file), content, `${file} restored`);
  // Left: only what buildx keeps for itself whatever the builder (its lock, this machine's node id).
  const added = [...now.keys()].filter((f) => !originalFiles.has(f));
  assert.deepEqual(added.filter((f) => f !== 'buildx/.lock' && f !== 'buildx/.buildNodeID'), [], 'nothing of Slipway remains');
  const ls = await docker(['buildx', 'ls']);
  assert.doesNotMatch(ls.stdout, /^slipway/m);
});
