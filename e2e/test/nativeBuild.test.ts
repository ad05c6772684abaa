// `slipway build` (the real program) speaking BuildKit itself through the gateway and an agent in
// dockerd mode to dockerd 20.10's BuildKit: no Docker CLI, no buildx.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startDockerd, startStack, startAgentProcess, spawnManaged, makeBusyboxContext, runCommand, tempDir, SLIPWAY_BIN, type Dockerd, type SlipwayStack, type TempDir } from '@slipway/e2e';

describe('slipway build against dockerd 20.10', () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let scratch: TempDir;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    scratch = await tempDir('native-build');
    dockerd = await startDockerd({ flavor: '20.10' });
    stack = await startStack();
    await stack.startAgent({ agentId: 'native-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    env = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: scratch.path,
      SLIPWAY_GATEWAY: stack.gatewayUrl,
      SLIPWAY_TOKEN: await stack.clientToken('demo'),
      SLIPWAY_CA_CERT: stack.caPath,
    };
  });
  after(async () => {
    await stack?.close();
    await dockerd?.stop();
    await scratch?.remove();
  });

  const slipwayBuild = (args: string[], extraEnv: Record<string, string> = {}) =>
    runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', ...args], { env: { ...env, ...extraEnv }, allowFailure: true, timeoutMs: 180_000 });

  test('a RUN step, a build arg and .dockerignore: the local output holds what was built and not the ignored file', async () => {
    const context = await makeBusyboxContext(path.join(scratch.path, `ctx-${Math.random().toString(36).slice(2)}`), {
      dockerfile: [
        'FROM scratch AS base',
        'COPY busybox /bin/busybox',
        'ARG GREETING=unset',
        'COPY . /ctx/',
        'RUN ["/bin/busybox","sh","-c","echo step-log-line && echo $GREETING > /greeting.txt"]',
        'FROM scratch',
        'COPY --from=base /greeting.txt /ctx /',
        '',
      ].join('\n'),
      files: { 'kept.txt': 'kept\n', 'secret-notes.txt': 'must not leave the machine\n', 'sub/data.bin': 'x'.repeat(3 * 1024 * 1024), '.dockerignore': 'secret-notes.txt\n*.tmp\n', 'scratch.tmp': 'ignored too\n' },
    });
    const dest = path.join(scratch.path, 'out1');
    const result = await slipwayBuild(['--build-arg', 'GREETING=hello-native', '--output', `type=local,dest=${dest}`, '--progress=plain', context.dir]);
    assert.equal(result.code, 0, `slipway build failed:\n${result.stderr}`);
    assert.equal(await fs.readFile(path.join(dest, 'greeting.txt'), 'utf8'), 'hello-native\n');
    assert.equal(await fs.readFile(path.join(dest, 'kept.txt'), 'utf8'), 'kept\n');
    assert.equal((await fs.readFile(path.join(dest, 'sub/data.bin'))).length, 3 * 1024 * 1024);
    await assert.rejects(fs.stat(path.join(dest, 'secret-notes.txt')), { code: 'ENOENT' }, 'the .dockerignore\'d file reached the builder');
    await assert.rejects(fs.stat(path.join(dest, 'scratch.tmp')), { code: 'ENOENT' });
    assert.ok((await fs.stat(path.join(dest, 'busybox'))).mode & 0o100, 'modes survive the round trip');
    assert.match(result.stderr, /#\d+ [\d.]+ step-log-line/, 'plain progress shows the RUN step\'s log');
    assert.match(result.stderr, /#\d+ DONE/);
    assert.match(result.stderr, /transferring dockerfile: \d+B done/, 'only the Dockerfile goes up for the Dockerfile, not the whole folder');
  });

  test('a failing RUN exits 1 with the step and its log tail', async () => {
    const context = await makeBusyboxContext(path.join(scratch.path, `ctx-${Math.random().toString(36).slice(2)}`), {
      dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox","sh","-c","echo about-to-fail-line && exit 7"]', ''].join('\n'),
    });
    const result = await slipwayBuild(['--progress=plain', context.dir]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /ERROR: failed to build linux\/amd64: .*exit code: 7/);
    assert.match(result.stderr, / > .*about-to-fail-line|about-to-fail-line/);
    const report = result.stderr.slice(result.stderr.indexOf('ERROR: failed to build'));
    assert.match(report, /about-to-fail-line/, 'the report repeats the failing step\'s log tail');
  });
});

describe('slipway build when the builder goes away (dockerd 20.10)', () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let scratch: TempDir;

  before(async () => {
    scratch = await tempDir('native-build-lost');
    dockerd = await startDockerd({ flavor: '20.10' });
    stack = await startStack();
  });
  after(async () => {
    await stack?.close();
    await dockerd?.stop();
    await scratch?.remove();
  });

  test('an agent killed during a long RUN is reported as a lost builder, not as a build error', async () => {
    const agent = await startAgentProcess(stack, { agentId: 'doomed-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-lost'), {
      dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox","sh","-c","echo long-step-started && /bin/busybox sleep 120"]', ''].join('\n'),
    });
    const build = spawnManaged(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--progress=plain', context.dir], {
      name: 'slipway-build',
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: scratch.path,
        SLIPWAY_GATEWAY: stack.gatewayUrl,
        SLIPWAY_TOKEN: await stack.clientToken('demo'),
        SLIPWAY_CA_CERT: stack.caPath,
      },
    });
    try {
      await build.waitForOutput(/long-step-started/, 120_000);
      agent.kill();
      const status = await build.exited;
      const output = build.output();
      assert.ok(status.code === 11 || status.code === 10, `expected exit 11 (AGENT_LOST) or 10 (TUNNEL_FAILED); got ${JSON.stringify(status)}\n${output}`);
      assert.match(output, /tunnel to the linux\/amd64 builder was lost/);
      assert.doesNotMatch(output, /ERROR: failed to build/);
    } finally {
      build.kill();
      agent.kill();
    }
  });
});
