// The acceptance path: real dockerd, the gateway, an agent and the real `slipway proxy` program,
// then BuildKit clients that know nothing of Slipway: a gRPC ListWorkers call, buildx with the
// remote driver, and the classic docker CLI against an agent in engine mode.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  startDockerd,
  startStack,
  startSlipwayProxy,
  listWorkers,
  prepareBuildx,
  buildxUnavailableReason,
  makeBusyboxContext,
  runCommand,
  tempDir,
  type Dockerd,
  type SlipwayStack,
  type TempDir,
  type ManagedProcess,
} from '@slipway/e2e';

const BUILD_DOCKERFILE = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /out && echo built-through-slipway > /out/hello.txt && /bin/busybox uname -m > /out/arch.txt"]
`;

interface TunnelToDockerd {
  dockerd: Dockerd;
  scratch: TempDir;
  stack: SlipwayStack;
  proxySocket: string;
  close(): Promise<void>;
}

// A dockerd, a gateway, one agent forwarding to that dockerd in the given mode, and the real
// `slipway proxy` program serving a local socket for it.
async function tunnelToDockerd(mode: 'dockerd' | 'engine'): Promise<TunnelToDockerd> {
  const scratch = await tempDir(mode);
  const dockerd = await startDockerd({ flavor: '20.10' });
  const stack = await startStack();
  await stack.startAgent({ agentId: `${mode}-amd64`, platform: 'linux/amd64', upstream: `${mode}:unix://${dockerd.socketPath}` });
  const proxySocket = path.join(scratch.path, `${mode}.sock`);
  const proxy: ManagedProcess = await startSlipwayProxy({
    gatewayUrl: stack.gatewayUrl,
    token: await stack.clientToken('demo'),
    caPath: stack.caPath,
    platform: 'linux/amd64',
    socketPath: proxySocket,
  });
  return {
    dockerd,
    scratch,
    stack,
    proxySocket,
    close: async () => {
      await proxy.stop();
      await stack.close();
      await dockerd.stop();
      await scratch.remove();
    },
  };
}

describe('BuildKit through the tunnel (dockerd 20.10)', () => {
  let t: TunnelToDockerd;
  before(async () => {
    t = await tunnelToDockerd('dockerd');
  });
  after(async () => {
    await t?.close();
  });

  test('ListWorkers through the proxy socket returns dockerd workers', async () => {
    const workers = await listWorkers(`unix://${t.proxySocket}`);
    assert.ok(workers.length > 0, 'at least one worker');
    const platforms = workers.flatMap((w) => w.platforms);
    assert.ok(platforms.includes('linux/amd64'), `linux/amd64 among ${platforms.join(', ')}`);
    // The same call straight to dockerd sees the same workers: the tunnel changed nothing.
    const direct = await listWorkers(`unix://${t.dockerd.socketPath}`).catch(() => undefined);
    if (direct) assert.deepEqual(workers.map((w) => w.id).sort(), direct.map((w) => w.id).sort());
  });

  test('buildx with the remote driver builds a RUN step with a local output', { skip: buildxUnavailableReason() ?? false }, async () => {
    const buildx = await prepareBuildx(path.join(t.scratch.path, 'buildx'));
    const context = await makeBusyboxContext(path.join(t.scratch.path, 'ctx'), { dockerfile: BUILD_DOCKERFILE });
    const out = path.join(t.scratch.path, 'out');
    await buildx.run(['buildx', 'create', '--name', 'slipway-e2e', '--driver', 'remote', `unix://${t.proxySocket}`]);
    await buildx.run(['buildx', 'build', '--builder', 'slipway-e2e', '--progress', 'plain', '--output', `type=local,dest=${out}`, context.dir], {
      timeoutMs: 240_000,
    });
    assert.equal((await fs.readFile(path.join(out, 'out/hello.txt'), 'utf8')).trim(), 'built-through-slipway');
    assert.equal((await fs.readFile(path.join(out, 'out/arch.txt'), 'utf8')).trim(), 'x86_64');
    const streams = t.stack.gateway.metrics.registry.render();
    assert.match(streams, /slipway_tunnel_streams_opened_total\{platform="linux\/amd64",transport="h2"\} [1-9]/);
  });
});

describe('Docker Engine API through the tunnel (engine mode)', () => {
  let t: TunnelToDockerd;
  before(async () => {
    t = await tunnelToDockerd('engine');
  });
  after(async () => {
    await t?.close();
  });

  test('DOCKER_BUILDKIT=1 docker build through the proxy, and the image is inspectable', async () => {
    const context = await makeBusyboxContext(path.join(t.scratch.path, 'ctx'), { dockerfile: BUILD_DOCKERFILE });
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', DOCKER_BUILDKIT: '1', HOME: t.scratch.path, DOCKER_CONFIG: path.join(t.scratch.path, 'dc') };
    await runCommand('/usr/bin/docker', ['-H', `unix://${t.proxySocket}`, 'build', '--progress', 'plain', '-t', 'slipway-e2e:engine', context.dir], {
      env,
      timeoutMs: 240_000,
    });
    const inspected = await runCommand('/usr/bin/docker', ['-H', `unix://${t.dockerd.socketPath}`, 'image', 'inspect', 'slipway-e2e:engine', '--format', '{{.Architecture}}'], { env });
    assert.equal(inspected.stdout.trim(), 'amd64');
    // And through the tunnel too: the Engine API is carried whole.
    const viaTunnel = await runCommand('/usr/bin/docker', ['-H', `unix://${t.proxySocket}`, 'image', 'inspect', 'slipway-e2e:engine', '--format', '{{.Id}}'], { env });
    assert.match(viaTunnel.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
  });
});
