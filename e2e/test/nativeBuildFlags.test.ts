// `slipway build`'s progress, --pull, --ssh and cache flags through the real gateway and an agent
// in dockerd mode: dockerd 26's modern BuildKit (containerd image store) and dockerd 20.10's.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDockerd, startStack, startRegistry, makeBusyboxContext, runCommand, tempDir, SLIPWAY_BIN, type Dockerd, type Registry, type SlipwayStack, type TempDir, slipwayClientEnv } from '@slipway/e2e';

const KEY_COMMENT = 'slipway-e2e-forwarded-key';
const SOCAT = '/usr/bin/socat';

/** socat and the shared libraries it loads, laid out under `root` as they are on this machine: a RUN step's unix-socket client (busybox has none). */
async function socatRoot(root: string): Promise<void> {
  const ldd = await runCommand('ldd', [SOCAT]);
  const files = [SOCAT, ...[...ldd.stdout.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!)];
  for (const file of files) {
    await fs.mkdir(path.join(root, path.dirname(file)), { recursive: true });
    await fs.copyFile(file, path.join(root, file));
    await fs.chmod(path.join(root, file), 0o755);
  }
}

/** A real ssh-agent holding a freshly generated key. */
async function startSshAgent(dir: string): Promise<{ socket: string; keyFile: string; process: ChildProcess }> {
  const socket = path.join(dir, 'agent.sock');
  const agent = spawn('/usr/bin/ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  for (let i = 0; i < 400 && !existsSync(socket); i++) await sleep(25);
  await runCommand('/usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', KEY_COMMENT, '-f', path.join(dir, 'id_ed25519')]);
  await runCommand('/usr/bin/ssh-add', [path.join(dir, 'id_ed25519')], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
  return { socket, keyFile: path.join(dir, 'id_ed25519'), process: agent };
}

// Runs a command with a pseudo-terminal of 100x30 as its stdin, stdout and stderr (set by the
// child on its own terminal before exec, so the size is there when the program looks), and
// passes back what the terminal showed.
const PTY_RUNNER = [
  'import fcntl, os, pty, struct, sys, termios',
  'pid, fd = pty.fork()',
  'if pid == 0:',
  '    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))',
  '    os.execvp(sys.argv[1], sys.argv[1:])',
  'out = bytearray()',
  'while True:',
  '    try:',
  '        chunk = os.read(fd, 65536)',
  '    except OSError:',
  '        break',
  '    if not chunk:',
  '        break',
  '    out += chunk',
  '_, status = os.waitpid(pid, 0)',
  'sys.stdout.buffer.write(bytes(out))',
  'sys.exit(os.waitstatus_to_exitcode(status))',
].join('\n');

/** POST /build/prune?all=1: the builder forgets its whole build cache. */
function pruneBuildCache(dockerd: Dockerd): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: dockerd.socketPath, path: '/build/prune?all=1', method: 'POST' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`build prune answered ${res.statusCode}: ${body}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Puts a one-layer image (busybox and base.txt) into the registry by hand, through the distribution API. */
async function pushBaseImage(registry: Registry, scratch: string, repo: string, tag: string, marker: string): Promise<void> {
  const dir = path.join(scratch, `base-${marker}`);
  await fs.mkdir(path.join(dir, 'bin'), { recursive: true });
  await fs.copyFile('/bin/busybox', path.join(dir, 'bin/busybox'));
  await fs.writeFile(path.join(dir, 'base.txt'), `${marker}\n`);
  await runCommand('tar', ['-C', dir, '-cf', `${dir}.tar`, 'bin', 'base.txt']);
  const layerTar = await fs.readFile(`${dir}.tar`);
  await runCommand('gzip', ['-kn', `${dir}.tar`]);
  const layer = await fs.readFile(`${dir}.tar.gz`);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256(layerTar)] } }));
  for (const blob of [layer, config]) {
    const start = await registry.request(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202, start.body.toString());
    const location = new URL(String(start.headers['location']), registry.url);
    location.searchParams.set('digest', sha256(blob));
    const put = await registry.request(`${location.pathname}${location.search}`, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(put.status, 201, put.body.toString());
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
  };
  const put = await registry.request(`/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: JSON.stringify(manifest), headers: { 'content-type': manifest.mediaType } });
  assert.equal(put.status, 201, put.body.toString());
}

for (const flavor of ['26', '20.10'] as const) describe(`slipway build flags against dockerd ${flavor}`, () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let scratch: TempDir;
  let registry: Registry;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    scratch = await tempDir('native-build-flags');
    // dockerd 26 runs RUN steps with --network=none, so it needs no bridge and leaves docker0 to
    // other tests' daemons; 20.10's Dockerfile frontend has no RUN --network, so it keeps the bridge.
    dockerd = await startDockerd({ flavor, bridge: flavor === '26' ? 'none' : 'default' });
    stack = await startStack();
    registry = await startRegistry();
    await stack.startAgent({ agentId: `flags-${flavor.replace('.', '')}`, platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    env = await slipwayClientEnv(stack, scratch.path);
  });
  after(async () => {
    await stack?.close();
    await registry?.stop();
    await dockerd?.stop();
    await scratch?.remove();
  });

  const slipwayBuild = (args: string[], extraEnv: Record<string, string> = {}) =>
    runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', ...args], { env: { ...env, ...extraEnv }, allowFailure: true, timeoutMs: 180_000 });
  const RUN = flavor === '26' ? 'RUN --network=none' : 'RUN';
  const context = (name: string, dockerfile: string[], files: Record<string, string> = {}) =>
    makeBusyboxContext(path.join(scratch.path, `${name}-${Math.random().toString(36).slice(2)}`), { dockerfile: [...dockerfile, ''].join('\n'), files });

  test('--progress=rawjson: one JSON object per line, buildx\'s fields, the steps as vertexes; quiet writes nothing', async () => {
    const ctx = await context('rawjson', ['FROM scratch', 'COPY busybox /bin/busybox', `${RUN} ["/bin/busybox","sh","-c","echo rawjson-log-line"]`]);
    const result = await slipwayBuild(['--progress=rawjson', ctx.dir]);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stderr.split('\n').filter((l) => l.startsWith('{'));
    assert.ok(lines.length > 3, result.stderr);
    const messages = lines.map((l) => JSON.parse(l) as { vertexes?: { digest: string; name: string; started?: string; completed?: string }[]; logs?: { vertex: string; data: string }[] });
    const vertexes = messages.flatMap((m) => m.vertexes ?? []);
    const run = vertexes.find((v) => v.name.includes('RUN') && v.completed !== undefined);
    assert.ok(run, 'the RUN step is a vertex with its completion time');
    assert.match(run.digest, /^sha256:[0-9a-f]{64}$/);
    assert.ok(!Number.isNaN(Date.parse(run.completed!)), run.completed);
    const logged = messages.flatMap((m) => m.logs ?? []).filter((l) => l.vertex === run.digest).map((l) => Buffer.from(l.data, 'base64').toString()).join('');
    assert.match(logged, /rawjson-log-line/, 'logs carry the step\'s output in base64, tied to its vertex');
    const quiet = await slipwayBuild(['--progress=quiet', ctx.dir]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, '', 'quiet: nothing but errors');
  });

  if (flavor === '26') test('--progress=quiet with an image pushed: nothing on stderr, the image ID (its config digest) alone on stdout', async () => {
    const ctx = await context('quiet-image', ['FROM scratch', 'COPY busybox /bin/busybox']);
    const result = await slipwayBuild(['--progress=quiet', '--output', `type=image,name=${registry.host}/quiet:1,push=true`, ctx.dir]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, '');
    assert.match(result.stdout, /^sha256:[0-9a-f]{64}\n$/);
    const manifest = await registry.request('/v2/quiet/manifests/1', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
    assert.equal(manifest.status, 200);
    assert.equal(result.stdout.trim(), (JSON.parse(manifest.body.toString()) as { config: { digest: string } }).config.digest, 'the image ID is the pushed image\'s config digest');
  });

  // The renderer does not depend on the builder: one flavour is enough.
  if (flavor === '26') test('on a terminal, auto is the live tty view: redrawn in place, CACHED steps, timings, FINISHED', async () => {
    const ctx = await context('tty', ['FROM scratch', 'COPY busybox /bin/busybox', `${RUN} ["/bin/busybox","sh","-c","echo tty-log-line; /bin/busybox sleep 1"]`]);
    const onTerminal = () =>
      runCommand('python3', ['-c', PTY_RUNNER, process.execPath, SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', ctx.dir], { env, allowFailure: true, timeoutMs: 180_000 });
    const first = await onTerminal();
    assert.equal(first.code, 0, first.stdout);
    const screen = first.stdout;
    assert.match(screen, /\x1b\[\d+A/, 'the cursor moves back up over the last frame');
    assert.match(screen, /\[\+\] Building [\d.]+s \(\d+\/\d+\) FINISHED/);
    assert.match(screen, / => \[2\/2\] RUN (--network=none )?\["\/bin\/busybox","sh","-c","echo tty-log-line.* \d+\.\ds\r?$/m);
    assert.doesNotMatch(screen, /^#\d+ /m, 'not the plain format');
    const frameLines = screen.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').split(/\r?\n/).filter((l) => l.startsWith(' => ') || l.startsWith('[+]'));
    for (const line of frameLines) assert.ok(line.length <= 100, `a frame line wider than the terminal: ${line}`);
    const second = await onTerminal();
    assert.equal(second.code, 0, second.stdout);
    assert.match(second.stdout, / => CACHED \[2\/2\] RUN .* 0\.0s/);
  });

  test('--ssh default and --ssh ID=KEYFILE: RUN --mount=type=ssh steps talk to the forwarded agent, which lists the user\'s key', async () => {
    const agent = await startSshAgent(await fs.mkdtemp(path.join(scratch.path, 'ssh-')));
    try {
      const ctx = await context('ssh', [
        'FROM scratch',
        'COPY busybox /bin/busybox',
        'COPY root/ /',
        // SSH2_AGENTC_REQUEST_IDENTITIES (length 1, type 11); the answer lists the agent's keys with their comments.
        `${RUN} --mount=type=ssh ["/bin/busybox","sh","-c","printf '\\\\000\\\\000\\\\000\\\\001\\\\013' | /usr/bin/socat -t 5 - UNIX-CONNECT:$SSH_AUTH_SOCK > /agent-answer.bin"]`,
        'FROM scratch',
        'COPY --from=0 /agent-answer.bin /',
      ]);
      await socatRoot(path.join(ctx.dir, 'root'));
      const dest = path.join(scratch.path, `ssh-out-${flavor}`);
      const result = await slipwayBuild(['--ssh', 'default', '--output', `type=local,dest=${dest}`, '--progress=plain', ctx.dir], { SSH_AUTH_SOCK: agent.socket });
      assert.equal(result.code, 0, result.stderr);
      const answer = await fs.readFile(path.join(dest, 'agent-answer.bin'));
      assert.equal(answer[4], 12, `SSH_AGENT_IDENTITIES_ANSWER; got ${answer.toString('hex').slice(0, 40)}`);
      assert.equal(answer.readUInt32BE(5), 1, 'one key');
      assert.ok(answer.includes(Buffer.from(KEY_COMMENT)), 'the key\'s comment came through the forwarded socket');
      // A named, required mount served from the key file itself (--ssh ID=KEYFILE): our own agent
      // holds the key; the ID travels in the ForwardAgent call's metadata.
      await fs.writeFile(ctx.dockerfilePath, (await fs.readFile(ctx.dockerfilePath, 'utf8')).replace('--mount=type=ssh ', '--mount=type=ssh,id=deploy,required=true '));
      const keyDest = `${dest}-key`;
      const keyed = await slipwayBuild(['--ssh', `deploy=${agent.keyFile}`, '--output', `type=local,dest=${keyDest}`, ctx.dir]);
      assert.equal(keyed.code, 0, keyed.stderr);
      const keyedAnswer = await fs.readFile(path.join(keyDest, 'agent-answer.bin'));
      assert.equal(keyedAnswer[4], 12);
      assert.ok(keyedAnswer.includes(Buffer.from(KEY_COMMENT)), 'the key file\'s comment came through the forwarded socket');
      // Forwarding another ID only: the required mount fails, naming the one missing.
      const without = await slipwayBuild(['--no-cache', '--ssh', 'default', ctx.dir], { SSH_AUTH_SOCK: agent.socket });
      assert.equal(without.code, 1, without.stderr);
      assert.match(without.stderr, /unset ssh forward key deploy/);
    } finally {
      agent.process.kill();
    }
  });

  test('--pull: the base image is resolved and pulled from the registry', async () => {
    await pushBaseImage(registry, scratch.path, 'base', '1', `pulled-base-${flavor}`);
    const ctx = await context('pull', [`FROM ${registry.host}/base:1`, `${RUN} ["/bin/busybox","sh","-c","cp /base.txt /seen.txt"]`, 'FROM scratch', 'COPY --from=0 /seen.txt /']);
    const dest = path.join(scratch.path, `pull-out-${flavor}`);
    const result = await slipwayBuild(['--pull', '--output', `type=local,dest=${dest}`, '--progress=plain', ctx.dir]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await fs.readFile(path.join(dest, 'seen.txt'), 'utf8'), `pulled-base-${flavor}\n`);
    assert.match(result.stderr, new RegExp(`load metadata for ${registry.host.replaceAll('.', '\\.')}/base:1`), 'the base image was resolved at the registry');
  });

  if (flavor === '26') {
    test('--cache-to type=registry, then --cache-from on a builder whose cache was pruned: the steps come from the registry, CACHED', async () => {
      const ctx = await context('cache', ['FROM scratch', 'COPY busybox /bin/busybox', `${RUN} ["/bin/busybox","sh","-c","/bin/busybox head -c 16 /dev/urandom | /bin/busybox od -x > /random.txt"]`]);
      const ref = `${registry.host}/cache:1`;
      const first = await slipwayBuild(['--cache-to', `type=registry,ref=${ref},mode=max`, '--output', `type=local,dest=${path.join(scratch.path, 'cache-1')}`, '--progress=plain', ctx.dir]);
      assert.equal(first.code, 0, first.stderr);
      assert.equal((await registry.request('/v2/cache/manifests/1', { headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json' } })).status, 200, 'the cache is in the registry');
      await pruneBuildCache(dockerd);
      const second = await slipwayBuild(['--cache-from', `type=registry,ref=${ref}`, '--output', `type=local,dest=${path.join(scratch.path, 'cache-2')}`, '--progress=plain', ctx.dir]);
      assert.equal(second.code, 0, second.stderr);
      const run = /^#(\d+) \[\d\/\d\] RUN .*$/m.exec(second.stderr);
      assert.ok(run, second.stderr);
      assert.match(second.stderr, new RegExp(`^#${run[1]} CACHED$`, 'm'), `the RUN step came from the registry's cache:\n${second.stderr}`);
      const random = (n: number) => fs.readFile(path.join(scratch.path, `cache-${n}`, 'random.txt'), 'utf8');
      assert.equal(await random(2), await random(1), 'the cached result is the first build\'s');
      // Control: after another prune and without --cache-from, the step runs again.
      await pruneBuildCache(dockerd);
      const third = await slipwayBuild(['--output', `type=local,dest=${path.join(scratch.path, 'cache-3')}`, '--progress=plain', ctx.dir]);
      assert.equal(third.code, 0, third.stderr);
      assert.notEqual(await random(3), await random(1));
    });

    test('--cache-to type=inline puts the cache in the pushed image\'s config; a bare --cache-from IMAGE on a pruned builder reuses it', async () => {
      const ctx = await context('inline', ['FROM scratch', 'COPY busybox /bin/busybox', `${RUN} ["/bin/busybox","sh","-c","/bin/busybox head -c 16 /dev/urandom | /bin/busybox od -x > /random.txt"]`]);
      const image = `${registry.host}/inline:1`;
      const first = await slipwayBuild(['--cache-to', 'type=inline', '--output', `type=image,name=${image},push=true`, ctx.dir]);
      assert.equal(first.code, 0, first.stderr);
      const manifest = await registry.request('/v2/inline/manifests/1', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
      const configDigest = (JSON.parse(manifest.body.toString()) as { config: { digest: string } }).config.digest;
      const config = JSON.parse((await registry.request(`/v2/inline/blobs/${configDigest}`)).body.toString()) as Record<string, unknown>;
      assert.ok('moby.buildkit.cache.v0' in config, `the image config carries BuildKit's inline cache: ${Object.keys(config).join(', ')}`);
      await pruneBuildCache(dockerd);
      const second = await slipwayBuild(['--cache-from', image, '--output', `type=local,dest=${path.join(scratch.path, 'inline-2')}`, '--progress=plain', ctx.dir]);
      assert.equal(second.code, 0, second.stderr);
      const run = /^#(\d+) \[\d\/\d\] RUN .*$/m.exec(second.stderr);
      assert.ok(run, second.stderr);
      assert.match(second.stderr, new RegExp(`^#${run[1]} CACHED$`, 'm'), `the RUN step came from the image's inline cache:\n${second.stderr}`);
    });
  } else {
    test('a registry cache export is refused on dockerd 20.10\'s builder, naming the cache type', async () => {
      const ctx = await context('cache-old', ['FROM scratch', 'COPY busybox /bin/busybox']);
      const result = await slipwayBuild(['--cache-to', `type=registry,ref=${registry.host}/cache:old`, ctx.dir]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /the linux\/amd64 builder cannot do --cache-to type=registry: Docker Engine's BuildKit with the classic image store .* exports cache inline only/);
      assert.doesNotMatch(result.stderr, /\[1\/1\] COPY/, 'refused before any step ran');
      const inline = await slipwayBuild(['--cache-to', 'type=inline', ctx.dir]);
      assert.equal(inline.code, 0, `inline cache is what this builder can export:\n${inline.stderr}`);
    });
  }
});
