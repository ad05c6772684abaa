// `slipway build` (the real program) speaking BuildKit itself through the gateway and an agent in
// dockerd mode to dockerd 20.10's BuildKit: no Docker CLI, no buildx.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startDockerd, startStack, startAgentProcess, spawnManaged, makeBusyboxContext, runCommand, tempDir, SLIPWAY_BIN, type Dockerd, type SlipwayStack, type TempDir, slipwayClientEnv } from '@slipway/e2e';

for (const flavor of ['20.10', '26'] as const) describe(`slipway build against dockerd ${flavor}`, () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let scratch: TempDir;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    scratch = await tempDir('native-build');
    dockerd = await startDockerd({ flavor });
    stack = await startStack();
    await stack.startAgent({ agentId: 'native-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    env = await slipwayClientEnv(stack, scratch.path);
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
    const sessionStreams = () => stack.gateway.metrics.streamsByKind.values.get('{kind="session"}') ?? 0;
    const sessionsBefore = sessionStreams();
    const result = await slipwayBuild(['--build-arg', 'GREETING=hello-native', '--output', `type=local,dest=${dest}`, '--progress=plain', context.dir]);
    assert.equal(result.code, 0, `slipway build failed:\n${result.stderr}`);
    // The context went up on a stream of its own, attached to dockerd's /session (not inside Control.Session).
    assert.equal(sessionStreams() - sessionsBefore, 1, 'one session stream per build');
    assert.deepEqual([...stack.gateway.metrics.streamsFailed.values.keys()].filter((k) => k.includes('UNSUPPORTED')), [], 'the agent attached it');
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

  test('--target builds the named stage of a multi-stage Dockerfile and only what it needs', async () => {
    const context = await makeBusyboxContext(path.join(scratch.path, `ctx-target-${flavor}`), {
      dockerfile: [
        'FROM scratch AS tools',
        'COPY busybox /bin/busybox',
        'FROM scratch AS first',
        'COPY --from=tools /bin/busybox /bin/busybox',
        'COPY first.txt /stage.txt',
        'FROM scratch AS second',
        'COPY second.txt /stage.txt',
        'COPY --from=first /stage.txt /from-first.txt',
        '',
      ].join('\n'),
      files: { 'first.txt': 'stage first\n', 'second.txt': 'stage second\n' },
    });
    const first = path.join(scratch.path, `target-first-${flavor}`);
    const built = await slipwayBuild(['--target', 'first', '--output', `type=local,dest=${first}`, context.dir]);
    assert.equal(built.code, 0, built.stderr);
    assert.equal(await fs.readFile(path.join(first, 'stage.txt'), 'utf8'), 'stage first\n');
    assert.ok((await fs.stat(path.join(first, 'bin/busybox'))).isFile(), 'the stage it copies from was built too');
    await assert.rejects(fs.stat(path.join(first, 'from-first.txt')), { code: 'ENOENT' }, 'the later stage was not built into the output');
    // Without --target the last stage is the result, built on top of the first.
    const last = path.join(scratch.path, `target-last-${flavor}`);
    const all = await slipwayBuild(['--output', `type=local,dest=${last}`, context.dir]);
    assert.equal(all.code, 0, all.stderr);
    assert.equal(await fs.readFile(path.join(last, 'stage.txt'), 'utf8'), 'stage second\n');
    assert.equal(await fs.readFile(path.join(last, 'from-first.txt'), 'utf8'), 'stage first\n');
    const unknown = await slipwayBuild(['--target', 'nope', context.dir]);
    assert.equal(unknown.code, 1, unknown.stderr);
    assert.match(unknown.stderr, /target stage "?nope"? could not be found/i);
  });

  test('type=tar lists the files; a second identical build reports every step as cached', async () => {
    const context = await makeBusyboxContext(path.join(scratch.path, `ctx-tar-${flavor}`), {
      dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox","sh","-c","echo tarred > /t.txt"]', ''].join('\n'),
    });
    const tarFile = path.join(scratch.path, `out-${flavor}.tar`);
    const first = await slipwayBuild(['--output', `type=tar,dest=${tarFile}`, context.dir]);
    assert.equal(first.code, 0, first.stderr);
    const listing = await runCommand('tar', ['-tf', tarFile]);
    const names = listing.stdout.split('\n').filter((l) => l !== '');
    // RUN leaves its mount points (dev/, proc/, ...) behind: only what the build made is checked.
    for (const name of ['bin/busybox', 't.txt']) assert.ok(names.includes(name), `${name} in the tarball: ${names.join(' ')}`);
    assert.equal((await runCommand('tar', ['-xOf', tarFile, 't.txt'])).stdout, 'tarred\n');
    const second = await slipwayBuild(['--output', `type=tar,dest=${tarFile}`, context.dir]);
    assert.equal(second.code, 0, second.stderr);
    const steps = [...second.stderr.matchAll(/^#\d+ \[\d+\/\d+\] .*$/gm)].map((m) => m[0]);
    assert.ok(steps.length >= 2, second.stderr);
    for (const step of steps) {
      const n = step.split(' ')[0];
      assert.match(second.stderr, new RegExp(`^${n} CACHED$`, 'm'), `${step} is cached the second time:\n${second.stderr}`);
    }
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
      env: await slipwayClientEnv(stack, scratch.path),
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

  test('Ctrl-C during a long RUN cancels the step on the builder and exits 130', async () => {
    await stack.startAgent({ agentId: 'steady-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-cancel'), {
      dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox","sh","-c","echo cancel-me-started && /bin/busybox sleep 6 && echo cancel-me-finished"]', ''].join('\n'),
    });
    const buildEnv = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: scratch.path,
      SLIPWAY_GATEWAY: stack.gatewayUrl,
      SLIPWAY_TOKEN: await stack.clientToken('demo'),
      SLIPWAY_CA_CERT: stack.caPath,
    };
    const build = spawnManaged(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--progress=plain', context.dir], { name: 'slipway-build-cancel', env: buildEnv });
    try {
      await build.waitForOutput(/#\d+ [\d.]+ cancel-me-started/, 120_000);
      process.kill(build.pid!, 'SIGINT');
      const status = await build.exited;
      assert.equal(status.code, 130, build.output());
      assert.match(build.output(), /cancelled/);
      assert.doesNotMatch(build.output(), /#\d+ [\d.]+ cancel-me-finished/);
    } finally {
      build.kill();
    }
    // Had the step gone on after the cancel, it would now be in the cache; it runs again instead.
    const again = await runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--progress=plain', context.dir], { env: buildEnv, allowFailure: true, timeoutMs: 120_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /#\d+ [\d.]+ cancel-me-finished/, `the RUN step ran again rather than coming from the cache:\n${again.stderr}`);
  });
});

describe('slipway build: several platforms and secrets (dockerd 20.10)', () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let scratch: TempDir;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    scratch = await tempDir('native-build-multi');
    dockerd = await startDockerd({ flavor: '20.10' });
    stack = await startStack();
    // Both agents front the same dockerd: what is checked is that each platform's solve is routed
    // to the agent of that platform and both outputs arrive, not emulation.
    await stack.startAgent({ agentId: 'multi-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    await stack.startAgent({ agentId: 'multi-arm64', platform: 'linux/arm64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    env = await slipwayClientEnv(stack, scratch.path);
  });
  after(async () => {
    await stack?.close();
    await dockerd?.stop();
    await scratch?.remove();
  });

  test('--platform linux/amd64,linux/arm64: one solve per platform, outputs in dest/<os>_<arch>/', async () => {
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-multi'), {
      dockerfile: ['FROM scratch', 'ARG TARGETPLATFORM', 'COPY busybox /bin/busybox', 'COPY marker.txt /marker.txt', 'LABEL for=$TARGETPLATFORM', ''].join('\n'),
      files: { 'marker.txt': 'both\n' },
    });
    const dest = path.join(scratch.path, 'out-multi');
    const result = await runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64,linux/arm64', '-o', dest, '--progress=plain', context.dir], { env, allowFailure: true, timeoutMs: 180_000 });
    assert.equal(result.code, 0, result.stderr);
    for (const sub of ['linux_amd64', 'linux_arm64']) {
      assert.equal(await fs.readFile(path.join(dest, sub, 'marker.txt'), 'utf8'), 'both\n', `${sub}'s output`);
    }
    assert.match(result.stderr, /\[linux\/amd64\] #\d+/);
    assert.match(result.stderr, /\[linux\/arm64\] #\d+/);
    const metrics = await stack.gateway.metrics.registry.render();
    for (const platform of ['linux/amd64', 'linux/arm64']) {
      assert.match(metrics, new RegExp(`slipway_placements_total\\{[^}]*platform="${platform}"[^}]*\\} [1-9]`), `a placement on a ${platform} builder:\n${metrics.split('\n').filter((l) => l.includes('placements')).join('\n')}`);
    }
  });

  test('--secret from a file and from the environment: RUN --mount=type=secret sees them, the output does not hold them', async () => {
    const secretFile = path.join(scratch.path, 'token.txt');
    await fs.writeFile(secretFile, 'file-s3cret-value');
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-secret'), {
      dockerfile: [
        'FROM scratch',
        'COPY busybox /bin/busybox',
        'RUN --mount=type=secret,id=tok --mount=type=secret,id=envtok ["/bin/busybox","sh","-c","/bin/busybox mkdir -p /out && [ \\"$(/bin/busybox cat /run/secrets/tok)\\" = file-s3cret-value ] && [ \\"$(/bin/busybox cat /run/secrets/envtok)\\" = env-s3cret-value ] && echo seen > /out/seen.txt"]',
        '',
      ].join('\n'),
    });
    const dest = path.join(scratch.path, 'out-secret');
    const result = await runCommand(
      process.execPath,
      [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--secret', `id=tok,src=${secretFile}`, '--secret', 'id=envtok,env=MY_SECRET', '--output', `type=local,dest=${dest}`, context.dir],
      { env: { ...env, MY_SECRET: 'env-s3cret-value' }, allowFailure: true, timeoutMs: 180_000 },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await fs.readFile(path.join(dest, 'out/seen.txt'), 'utf8'), 'seen\n');
    const grep = await runCommand('grep', ['-r', '-l', 's3cret-value', dest], { allowFailure: true });
    assert.equal(grep.stdout, '', 'no file of the output holds a secret');
    await assert.rejects(fs.stat(path.join(dest, 'run/secrets/tok')), { code: 'ENOENT' });
  });
});
