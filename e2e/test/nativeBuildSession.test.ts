// How `slipway build`'s BuildKit session reaches the builder. With a Docker Engine behind the
// agent, the session rides a tunnel stream of its own that the agent attaches to dockerd's
// /session (over a lane, and over the agent link when the agent keeps no lanes). With a buildkitd
// behind the agent there is no /session: the agent refuses the attachment as UNSUPPORTED and the
// CLI carries the session on Control.Session instead. Here the "buildkitd" is real BuildKit too:
// a `slipway proxy` socket, which speaks BuildKit's gRPC API, to dockerd through a second agent.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  startDockerd,
  startStack,
  startSlipwayProxy,
  makeBusyboxContext,
  runCommand,
  tempDir,
  SLIPWAY_BIN,
  slipwayClientEnv,
  type Dockerd,
  type ManagedProcess,
  type SlipwayStack,
  type TempDir,
} from '@slipway/e2e';

describe('the build session on its own stream, and the fallback to Control.Session (dockerd 20.10)', () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let scratch: TempDir;
  let proxy: ManagedProcess;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    scratch = await tempDir('build-session');
    dockerd = await startDockerd({ flavor: '20.10' });
    stack = await startStack();
    // No lanes: every stream of this agent rides the agent link, the session's too.
    await stack.startAgent({ agentId: 'engine-on-link', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}`, lanes: 0 });
    const proxySocket = path.join(scratch.path, 'buildkit.sock');
    // Of the same project as the builds: a builder that just served a project is kept for it a while.
    proxy = await startSlipwayProxy({ gatewayUrl: stack.gatewayUrl, token: await stack.clientToken(), caPath: stack.caPath, platform: 'linux/amd64', socketPath: proxySocket });
    await stack.startAgent({ agentId: 'buildkitd-arm64', platform: 'linux/arm64', upstream: `buildkitd:unix://${proxySocket}` });
    env = await slipwayClientEnv(stack, scratch.path);
  });
  after(async () => {
    await proxy?.stop();
    await stack?.close();
    await dockerd?.stop();
    await scratch?.remove();
  });

  const counter = (values: Map<string, number>, label: string): number => {
    let total = 0;
    for (const [key, value] of values) if (key.includes(label)) total += value;
    return total;
  };
  const sessionStreams = () => counter(stack.gateway.metrics.streamsByKind.values, 'kind="session"');
  const unsupported = () => counter(stack.gateway.metrics.streamsFailed.values, 'code="UNSUPPORTED"');
  const onLink = () => counter(stack.gateway.metrics.streamsByPath.values, 'path="link"');

  async function buildTo(platform: string, name: string, extraEnv: Record<string, string> = {}): Promise<{ dest: string; stderr: string }> {
    const context = await makeBusyboxContext(path.join(scratch.path, `ctx-${name}`), {
      dockerfile: ['FROM scratch', 'COPY . /ctx/', ''].join('\n'),
      // Past a DATA packet (32 KiB) and a read (1 MiB), so files arrive in several packets.
      files: { 'hello.txt': `hello ${name}\n`, 'big/blob.bin': Buffer.alloc(3 * 1024 * 1024 + 5, name).toString('latin1'), '.dockerignore': 'secret.txt\n', 'secret.txt': 'stays home\n' },
    });
    const dest = path.join(scratch.path, `out-${name}`);
    const result = await runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', platform, '--progress=plain', '--output', `type=local,dest=${dest}`, context.dir], {
      env: { ...env, ...extraEnv },
      allowFailure: true,
      timeoutMs: 180_000,
    });
    assert.equal(result.code, 0, `slipway build --platform ${platform} failed:\n${result.stderr}`);
    assert.equal(await fs.readFile(path.join(dest, 'ctx/hello.txt'), 'utf8'), `hello ${name}\n`);
    assert.deepEqual(await fs.readFile(path.join(dest, 'ctx/big/blob.bin')), Buffer.alloc(3 * 1024 * 1024 + 5, name, 'latin1'));
    await assert.rejects(fs.stat(path.join(dest, 'ctx/secret.txt')), { code: 'ENOENT' });
    return { dest, stderr: result.stderr };
  }

  test('with a Docker Engine behind the agent, the session goes on a stream of its own, here over the agent link', async () => {
    const [sessions, refused, link] = [sessionStreams(), unsupported(), onLink()];
    await buildTo('linux/amd64', 'link');
    assert.equal(sessionStreams() - sessions, 1, 'one session stream for the build');
    assert.equal(unsupported() - refused, 0, 'the agent attached it');
    assert.equal(onLink() - link, 2, 'the API stream and the session stream both rode the link (the agent keeps no lanes)');
  });

  test('over WebSocket (SLIPWAY_TRANSPORT=websocket) the session stream is a WebSocket of its own, attached the same way', async () => {
    const [sessions, refused] = [sessionStreams(), unsupported()];
    const wsOpened = () => counter(stack.gateway.metrics.streamsOpened.values, 'transport="websocket"');
    const ws = wsOpened();
    await buildTo('linux/amd64', 'websocket', { SLIPWAY_TRANSPORT: 'websocket' });
    assert.equal(sessionStreams() - sessions, 1);
    assert.equal(unsupported() - refused, 0);
    assert.equal(wsOpened() - ws, 2, 'the API stream and the session stream, each a WebSocket');
  });

  test('with a buildkitd behind the agent, the attachment is refused as UNSUPPORTED and the session goes on Control.Session', async () => {
    const [sessions, refused] = [sessionStreams(), unsupported()];
    await buildTo('linux/arm64', 'fallback');
    assert.equal(sessionStreams() - sessions, 1, 'the CLI asked to attach once');
    assert.equal(unsupported() - refused, 1, 'the buildkitd agent refused it, and the build went on without it');
  });
});
