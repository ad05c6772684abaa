// `devcontainer build` (the reference CLI, @devcontainers/cli) after `slipway configure-docker`,
// with buildx present: the dev container's image builds on Slipway (the agent's counting relay
// proves it) and is loaded into the local dockerd 26, where it runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import {
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

function devcontainerCli(): string | undefined {
  try {
    const manifest = createRequire(import.meta.url).resolve('@devcontainers/cli/package.json');
    const bin = (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { bin: Record<string, string> }).bin['devcontainer'];
    return bin === undefined ? undefined : path.join(path.dirname(manifest), bin);
  } catch {
    return undefined;
  }
}

const cli = devcontainerCli();
const skip = buildxUnavailableReason() ?? (cli ? false : '@devcontainers/cli is not installed (npm install)');

let stack: SlipwayStack;
let dockerd: Dockerd;
let scratch: TempDir;
let buildx: Buildx;
let relay: CountingRelay;
let env: NodeJS.ProcessEnv;

before(async () => {
  if (skip) return;
  scratch = await tempDir('devcontainer');
  dockerd = await startDockerd({ flavor: '26' });
  stack = await startStack();
  const native = process.arch === 'arm64' ? 'arm64' : 'amd64';
  relay = await startCountingRelay(path.join(scratch.path, 'relay.sock'), dockerd.socketPath);
  await stack.startAgent({ agentId: `devcontainer-${native}`, platform: `linux/${native}`, upstream: `dockerd:${relay.address}` });
  buildx = await prepareBuildx(path.join(scratch.path, 'buildx'));
  env = {
    ...buildx.env,
    DOCKER_HOST: dockerd.host,
    HOME: path.join(scratch.path, 'home'),
    XDG_CONFIG_HOME: path.join(scratch.path, 'xdg'),
    SLIPWAY_GATEWAY: stack.gatewayUrl,
    SLIPWAY_TOKEN: await stack.clientToken('demo'),
    SLIPWAY_CA_CERT: stack.caPath,
    BUILDX_NO_DEFAULT_ATTESTATIONS: '1',
  };
  const configured = await runCommand(process.execPath, [SLIPWAY_BIN, 'configure-docker'], { env, allowFailure: true, timeoutMs: 120_000 });
  assert.equal(configured.code, 0, configured.stderr);
});

after(async () => {
  if (env) await runCommand(process.execPath, [SLIPWAY_BIN, 'configure-docker', '--uninstall'], { env, allowFailure: true });
  await stack?.close();
  await relay?.close();
  await dockerd?.stop();
  await scratch?.remove();
});

test('devcontainer build builds the dev container image through Slipway and loads it locally', { skip }, async () => {
  // The dev container CLI reads its base image's labels (no registry here, and scratch has none):
  // the base is built first, through Slipway too, into the local dockerd.
  const base = await makeBusyboxContext(path.join(scratch.path, 'base'), {
    dockerfile: 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /out"]\n',
  });
  await runCommand(buildx.docker, ['buildx', 'build', '--load', '-t', 'slipway-e2e/devbase:1', base.dir], { env, timeoutMs: 300_000 });
  const workspace = path.join(scratch.path, 'workspace');
  fs.mkdirSync(path.join(workspace, '.devcontainer'), { recursive: true });
  fs.writeFileSync(path.join(workspace, '.devcontainer', 'Dockerfile'), 'FROM slipway-e2e/devbase:1\nRUN ["/bin/busybox", "sh", "-c", "echo dev-container > /out/built.txt"]\n');
  fs.writeFileSync(path.join(workspace, '.devcontainer', 'devcontainer.json'), JSON.stringify({ name: 'slipway-e2e', build: { dockerfile: 'Dockerfile' } }, null, 2));
  const before = relay.connections;
  const result = await runCommand(process.execPath, [cli!, 'build', '--workspace-folder', workspace, '--image-name', 'slipway-e2e/devcontainer:1', '--log-level', 'debug'], { env, allowFailure: true, timeoutMs: 300_000 });
  const output = `${result.stdout}\n${result.stderr}`;
  assert.equal(result.code, 0, output);
  assert.match(output, /docker buildx build/, 'the dev container CLI used buildx');
  assert.ok(relay.connections > before, `the agent's BuildKit was used (${before} -> ${relay.connections} connections)`);
  const run = await runCommand(buildx.docker, ['run', '--rm', 'slipway-e2e/devcontainer:1', '/bin/busybox', 'cat', '/out/built.txt'], { env });
  assert.equal(run.stdout.trim(), 'dev-container');
});
