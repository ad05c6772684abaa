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

describe('BuildKit through the tunnel (dockerd 20.10)', () => {
  let dockerd: Dockerd;
  let scratch: TempDir;
  let stack: SlipwayStack;
  let proxy: ManagedProcess;
  let proxySocket: string;

  before(async () => {
    scratch = await tempDir('bk');
    dockerd = await startDockerd({ flavor: '20.10' });
    stack = await startStack();
    await stack.startAgent({ agentId: 'builder-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    proxySocket = path.join(scratch.path, 'amd64.sock');
    proxy = await startSlipwayProxy({
      gatewayUrl: stack.gatewayUrl,
      token: await stack.clientToken('demo'),
      caPath: stack.caPath,
      platform: 'linux/amd64',
      socketPath: proxySocket,
    });
  });

  after(async () => {
    await proxy?.stop();
    await stack?.close();
    await dockerd?.stop();
    await scratch?.remove();
  });

  test('ListWorkers through the proxy socket returns dockerd workers', async () => {
    const workers = await listWorkers(`unix://${proxySocket}`);
    assert.ok(workers.length > 0, 'at least one worker');
    const platforms = workers.flatMap((w) => w.platforms);
    assert.ok(platforms.includes('linux/amd64'), `linux/amd64 among ${platforms.join(', ')}`);
    // The same call straight to dockerd sees the same workers: the tunnel changed nothing.
    const direct = await listWorkers(`unix://${dockerd.socketPath}`).catch(() => undefined);
    if (direct) assert.deepEqual(workers.map((w) => w.id).sort(), direct.map((w) => w.id).sort());
  });

  test('buildx with the remote driver builds a RUN step with a local output', { skip: buildxUnavailableReason() ?? false }, async () => {
    const buildx = await prepareBuildx(path.join(scratch.path, 'buildx'));
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx'), { dockerfile: BUILD_DOCKERFILE });
    const out = path.join(scratch.path, 'out');
    await buildx.run(['buildx', 'create', '--name', 'slipway-e2e', '--driver', 'remote', `unix://${proxySocket}`]);
    await buildx.run(['buildx', 'build', '--builder', 'slipway-e2e', '--progress', 'plain', '--output', `type=local,dest=${out}`, context.dir], {
      timeoutMs: 240_000,
    });
    assert.equal((await fs.readFile(path.join(out, 'out/hello.txt'), 'utf8')).trim(), 'built-through-slipway');
    assert.equal((await fs.readFile(path.join(out, 'out/arch.txt'), 'utf8')).trim(), 'x86_64');
    const streams = stack.gateway.metrics.registry.render();
    assert.match(streams, /slipway_tunnel_streams_opened_total\{platform="linux\/amd64",transport="h2"\} [1-9]/);
  });
});

describe('Docker Engine API through the tunnel (engine mode)', () => {
  let dockerd: Dockerd;
  let scratch: TempDir;
  let stack: SlipwayStack;
  let proxy: ManagedProcess;
  let proxySocket: string;

  before(async () => {
    scratch = await tempDir('engine');
    dockerd = await startDockerd({ flavor: '20.10' });
    stack = await startStack();
    await stack.startAgent({ agentId: 'engine-amd64', platform: 'linux/amd64', upstream: `engine:unix://${dockerd.socketPath}` });
    proxySocket = path.join(scratch.path, 'engine.sock');
    proxy = await startSlipwayProxy({
      gatewayUrl: stack.gatewayUrl,
      token: await stack.clientToken('demo'),
      caPath: stack.caPath,
      platform: 'linux/amd64',
      socketPath: proxySocket,
    });
  });

  after(async () => {
    await proxy?.stop();
    await stack?.close();
    await dockerd?.stop();
    await scratch?.remove();
  });

  test('DOCKER_BUILDKIT=1 docker build through the proxy, and the image is inspectable', async () => {
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx'), { dockerfile: BUILD_DOCKERFILE });
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', DOCKER_BUILDKIT: '1', HOME: scratch.path, DOCKER_CONFIG: path.join(scratch.path, 'dc') };
    await runCommand('/usr/bin/docker', ['-H', `unix://${proxySocket}`, 'build', '--progress', 'plain', '-t', 'slipway-e2e:engine', context.dir], {
      env,
      timeoutMs: 240_000,
    });
    const inspected = await runCommand('/usr/bin/docker', ['-H', `unix://${dockerd.socketPath}`, 'image', 'inspect', 'slipway-e2e:engine', '--format', '{{.Architecture}}'], { env });
    assert.equal(inspected.stdout.trim(), 'amd64');
    // And through the tunnel too: the Engine API is carried whole.
    const viaTunnel = await runCommand('/usr/bin/docker', ['-H', `unix://${proxySocket}`, 'image', 'inspect', 'slipway-e2e:engine', '--format', '{{.Id}}'], { env });
    assert.match(viaTunnel.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
  });
});
