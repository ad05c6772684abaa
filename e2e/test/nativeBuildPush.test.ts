// `slipway build` and registries: the builder pulls and pushes with the user's credentials, which
// it asks the CLI for through the session's Auth service (as buildx serves them), read from a
// config.json in the test's DOCKER_CONFIG; a real docker-registry behind htpasswd Basic auth.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startDockerd, startStack, startCountingRelay, makeBusyboxContext, runCommand, startRegistry, tempDir, BUSYBOX_PATH, SLIPWAY_BIN, type CountingRelay, type Dockerd, type Registry, type SlipwayStack, type TempDir, slipwayClientEnv } from '@slipway/e2e';

/** A DOCKER_CONFIG folder whose config.json holds `auths` for the registries given. */
async function dockerConfig(dir: string, auths: Record<string, { username: string; password: string }>): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const config = { auths: Object.fromEntries(Object.entries(auths).map(([host, c]) => [host, { auth: Buffer.from(`${c.username}:${c.password}`).toString('base64') }])) };
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(config, null, '\t'));
  return dir;
}

for (const flavor of ['20.10', '26'] as const) describe(`slipway build pulls a private base image with the user's credentials (dockerd ${flavor})`, () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let registry: Registry;
  let tokenRegistry: Registry;
  let scratch: TempDir;
  let baseEnv: NodeJS.ProcessEnv;

  before(async () => {
    scratch = await tempDir(`native-pull-${flavor}`);
    registry = await startRegistry({ auth: true });
    tokenRegistry = await startRegistry({ tokenAuth: true });
    // No RUN step below, so the daemon needs no bridge: it leaves docker0 to other tests' dockerds.
    dockerd = await startDockerd({ flavor, bridge: 'none' });
    stack = await startStack();
    await stack.startAgent({ agentId: `pull-amd64-${flavor}`, platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    baseEnv = await slipwayClientEnv(stack, scratch.path);
    await registry.pushImage('private/base', '1', { files: { 'bin/busybox': { from: BUSYBOX_PATH }, 'etc/base-marker': `private base for ${flavor}\n` } });
    await tokenRegistry.pushImage('private/tokened', '1', { files: { 'etc/token-marker': `behind a token server (${flavor})\n` } });
  });
  after(async () => {
    await stack?.close();
    await dockerd?.stop();
    await registry?.stop();
    await tokenRegistry?.stop();
    await scratch?.remove();
  });

  const build = (args: string[], env: NodeJS.ProcessEnv) =>
    runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--progress=plain', ...args], { env, allowFailure: true, timeoutMs: 180_000 });

  test('without credentials the builder is refused by the registry; with config.json it pulls, and the image is the private one', async () => {
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx'), {
      dockerfile: [`FROM ${registry.host}/private/base:1`, 'COPY marker.txt /marker.txt', ''].join('\n'),
      files: { 'marker.txt': 'from the context\n' },
    });
    // First with a DOCKER_CONFIG that knows nothing of this registry: the pull must fail on auth.
    const emptyConfig = await dockerConfig(path.join(scratch.path, 'docker-empty'), {});
    const refused = await build(['--output', `type=local,dest=${path.join(scratch.path, 'out-refused')}`, context.dir], { ...baseEnv, DOCKER_CONFIG: emptyConfig });
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /401|[Uu]nauthorized|authoriz/, refused.stderr);

    const config = await dockerConfig(path.join(scratch.path, 'docker'), { [registry.host]: registry.credentials! });
    const dest = path.join(scratch.path, 'out');
    const result = await build(['--output', `type=local,dest=${dest}`, context.dir], { ...baseEnv, DOCKER_CONFIG: config });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await fs.readFile(path.join(dest, 'etc/base-marker'), 'utf8'), `private base for ${flavor}\n`);
    assert.equal(await fs.readFile(path.join(dest, 'marker.txt'), 'utf8'), 'from the context\n');
    assert.ok((await fs.stat(path.join(dest, 'bin/busybox'))).mode & 0o100);
  });

  for (const kind of ['password', 'identity token'] as const) {
    test(`a registry with token auth: the builder gets a token from its realm with the user's ${kind} from config.json`, async () => {
      const user = tokenRegistry.credentials!;
      const entry = kind === 'password' ? { auth: Buffer.from(`${user.username}:${user.password}`).toString('base64') } : { identitytoken: user.identityToken! };
      const configDir = path.join(scratch.path, `docker-token-${kind.replace(' ', '-')}`);
      await fs.mkdir(configDir, { recursive: true });
      await fs.writeFile(path.join(configDir, 'config.json'), JSON.stringify({ auths: { [tokenRegistry.host]: entry } }));
      const context = await makeBusyboxContext(path.join(scratch.path, `ctx-token-${kind.replace(' ', '-')}`), {
        dockerfile: [`FROM ${tokenRegistry.host}/private/tokened:1`, 'COPY kind.txt /kind.txt', ''].join('\n'),
        files: { 'kind.txt': `${kind}\n` },
      });
      const before = tokenRegistry.tokenServer!.requests.length;
      const dest = path.join(scratch.path, `out-token-${kind.replace(' ', '-')}`);
      const result = await build(['--output', `type=local,dest=${dest}`, context.dir], { ...baseEnv, DOCKER_CONFIG: configDir });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await fs.readFile(path.join(dest, 'etc/token-marker'), 'utf8'), `behind a token server (${flavor})\n`);
      const asked = tokenRegistry.tokenServer!.requests.slice(before);
      const granted = asked.filter((r) => r.status === 200 && r.user === user.username);
      assert.ok(granted.length >= 1, `the builder got a token as ${user.username}: ${JSON.stringify(asked)}`);
      assert.ok(granted.every((r) => r.via === (kind === 'password' ? 'basic' : 'refresh_token')), JSON.stringify(granted));
      assert.ok(granted.some((r) => r.scopes.includes('repository:private/tokened:pull')), JSON.stringify(granted));
    });
  }

  test('a failing credential helper fails the build with the helper named and its stderr', async () => {
    const bin = path.join(scratch.path, 'failing-helper-bin');
    await fs.mkdir(bin, { recursive: true });
    await fs.writeFile(path.join(bin, 'docker-credential-lockedtest'), `#!/bin/sh\ncat >/dev/null\necho 'the keychain is locked' >&2\nexit 4\n`, { mode: 0o755 });
    const configDir = path.join(scratch.path, 'docker-failing-helper');
    await fs.mkdir(configDir, { recursive: true });
    await fs.writeFile(path.join(configDir, 'config.json'), JSON.stringify({ credHelpers: { [registry.host]: 'lockedtest' } }));
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-failing-helper'), {
      dockerfile: [`FROM ${registry.host}/private/base:1`, 'COPY failing.txt /failing.txt', ''].join('\n'),
      files: { 'failing.txt': 'never\n' },
    });
    const result = await build(['--no-cache', '--output', `type=local,dest=${path.join(scratch.path, 'out-failing-helper')}`, context.dir], { ...baseEnv, PATH: `${bin}:${baseEnv.PATH}`, DOCKER_CONFIG: configDir });
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /docker-credential-lockedtest/);
    assert.match(result.stderr, /the keychain is locked/);
  });

  test('a credential helper named by credHelpers answers for the registry', async () => {
    const bin = path.join(scratch.path, 'helper-bin');
    await fs.mkdir(bin, { recursive: true });
    const log = path.join(scratch.path, 'helper.log');
    const answer = JSON.stringify({ ServerURL: registry.host, Username: registry.credentials!.username, Secret: registry.credentials!.password });
    await fs.writeFile(path.join(bin, 'docker-credential-slipwaye2e'), `#!/bin/sh\nprintf '%s\\n' "$1 $(cat)" >> '${log}'\nprintf '%s' '${answer}'\n`, { mode: 0o755 });
    const configDir = path.join(scratch.path, 'docker-helper');
    await fs.mkdir(configDir, { recursive: true });
    await fs.writeFile(path.join(configDir, 'config.json'), JSON.stringify({ credHelpers: { [registry.host]: 'slipwaye2e' } }));
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx-helper'), {
      dockerfile: [`FROM ${registry.host}/private/base:1`, 'COPY helper.txt /helper.txt', ''].join('\n'),
      files: { 'helper.txt': 'helper\n' },
    });
    const dest = path.join(scratch.path, 'out-helper');
    const result = await build(['--no-cache', '--output', `type=local,dest=${dest}`, context.dir], { ...baseEnv, PATH: `${bin}:${baseEnv.PATH}`, DOCKER_CONFIG: configDir });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await fs.readFile(path.join(dest, 'etc/base-marker'), 'utf8'), `private base for ${flavor}\n`);
    const calls = (await fs.readFile(log, 'utf8')).split('\n').filter((l) => l !== '');
    assert.ok(calls.length >= 1 && calls.every((c) => c === `get ${registry.host}`), `the helper was asked for ${registry.host}: ${calls.join(' | ')}`);
  });
});

interface IndexEntry {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string; variant?: string };
}

/** The platform a pushed image manifest's config names. */
async function configPlatform(registry: Registry, repository: string, manifestDigest: string): Promise<string> {
  const manifest = await registry.request(`/v2/${repository}/manifests/${manifestDigest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
  assert.equal(manifest.status, 200, `manifest ${manifestDigest}: ${manifest.body.toString()}`);
  const configDigest = (JSON.parse(manifest.body.toString()) as { config: { digest: string } }).config.digest;
  const config = JSON.parse((await registry.request(`/v2/${repository}/blobs/${configDigest}`)).body.toString()) as { os: string; architecture: string };
  return `${config.os}/${config.architecture}`;
}

async function placements(stack: SlipwayStack): Promise<Record<string, number>> {
  const text = await stack.gateway.metrics.registry.render();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^slipway_placements_total\{([^}]*)\} (\d+)$/gm)) {
    const platform = /platform="([^"]+)"/.exec(m[1]!)?.[1];
    if (platform) out[platform] = (out[platform] ?? 0) + Number(m[2]);
  }
  return out;
}


describe('slipway build --push to a registry (dockerd 26, containerd image store)', () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let open: Registry;
  let locked: Registry;
  let scratch: TempDir;
  let env: NodeJS.ProcessEnv;
  const relays: Partial<Record<'amd64' | 'arm64', CountingRelay>> = {};

  before(async () => {
    scratch = await tempDir('native-push');
    open = await startRegistry();
    locked = await startRegistry({ auth: true });
    dockerd = await startDockerd({ flavor: '26', bridge: 'none' });
    stack = await startStack();
    // Two builders, one per platform, both fronting this amd64 machine's dockerd: a relay in front
    // of each counts the connections its agent makes, proof of which builder each solve reached.
    // The Dockerfiles have no RUN step, so the arm64 image needs no emulation.
    for (const arch of ['amd64', 'arm64'] as const) {
      const relay = await startCountingRelay(path.join(scratch.path, `relay-${arch}.sock`), dockerd.socketPath);
      relays[arch] = relay;
      await stack.startAgent({ agentId: `push-${arch}`, platform: `linux/${arch}`, upstream: `dockerd:${relay.address}` });
    }
    env = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: scratch.path,
      DOCKER_CONFIG: await dockerConfig(path.join(scratch.path, 'docker'), { [locked.host]: locked.credentials! }),
      SLIPWAY_GATEWAY: stack.gatewayUrl,
      SLIPWAY_TOKEN: await stack.clientToken('demo'),
      SLIPWAY_CA_CERT: stack.caPath,
    };
  });
  after(async () => {
    await stack?.close();
    for (const relay of Object.values(relays)) await relay?.close();
    await dockerd?.stop();
    await open?.stop();
    await locked?.stop();
    await scratch?.remove();
  });

  const slipway = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
    runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--progress=plain', ...args], { env: { ...env, ...extraEnv }, allowFailure: true, timeoutMs: 240_000 });

  async function multiPlatformContext(name: string): Promise<string> {
    const context = await makeBusyboxContext(path.join(scratch.path, name), {
      dockerfile: ['FROM scratch', 'ARG TARGETPLATFORM', 'COPY busybox /bin/busybox', 'COPY marker.txt /marker.txt', 'LABEL built.for=$TARGETPLATFORM', ''].join('\n'),
      files: { 'marker.txt': `${name}\n` },
    });
    return context.dir;
  }

  async function expectIndex(registry: Registry, repository: string, tag: string, metadataFile: string): Promise<void> {
    const metadata = JSON.parse(await fs.readFile(metadataFile, 'utf8')) as Record<string, Record<string, string> | string>;
    const res = await registry.request(`/v2/${repository}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.headers['content-type'], 'application/vnd.oci.image.index.v1+json');
    const index = JSON.parse(res.body.toString()) as { schemaVersion: number; mediaType: string; manifests: IndexEntry[] };
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(metadata['containerimage.digest'], res.headers['docker-content-digest'], 'the metadata names the index the registry holds');
    const byPlatform = new Map(index.manifests.filter((m) => m.platform !== undefined).map((m) => [`${m.platform!.os}/${m.platform!.architecture}`, m]));
    assert.deepEqual([...byPlatform.keys()].sort(), ['linux/amd64', 'linux/arm64'], JSON.stringify(index.manifests));
    for (const platform of ['linux/amd64', 'linux/arm64']) {
      const entry = byPlatform.get(platform)!;
      const pushed = (metadata[platform] as Record<string, string>)['containerimage.digest'];
      assert.equal(entry.digest, pushed, `the index's ${platform} entry is what that platform's builder pushed`);
      assert.equal(await configPlatform(registry, repository, entry.digest), platform, `the ${platform} image's config`);
    }
  }

  test('--platform linux/amd64,linux/arm64 --push across two builders: the registry holds an OCI index of both, the digests the builders pushed', async () => {
    const before = { placements: await placements(stack), amd64: relays.amd64!.connections, arm64: relays.arm64!.connections };
    const metadataFile = path.join(scratch.path, 'multi-meta.json');
    const result = await slipway(['--platform', 'linux/amd64,linux/arm64', '--push', '-t', `${open.host}/app:1`, '--metadata-file', metadataFile, await multiPlatformContext('ctx-multi-push')]);
    assert.equal(result.code, 0, result.stderr);
    await expectIndex(open, 'app', '1', metadataFile);
    // Each platform's solve reached the builder of that platform.
    const after = await placements(stack);
    for (const platform of ['linux/amd64', 'linux/arm64']) {
      assert.ok((after[platform] ?? 0) > (before.placements[platform] ?? 0), `a placement on a ${platform} builder: ${JSON.stringify({ before: before.placements, after })}`);
    }
    assert.ok(relays.amd64!.connections > before.amd64, 'the amd64 agent reached its builder');
    assert.ok(relays.arm64!.connections > before.arm64, 'the arm64 agent reached its builder');
  });

  test('to a registry with auth, the builders push and the CLI writes the index with the credentials of config.json', async () => {
    const context = await multiPlatformContext('ctx-locked-push');
    // Without the credentials the builders' push is refused.
    const refused = await slipway(['--platform', 'linux/amd64,linux/arm64', '--push', '-t', `${locked.host}/team/app:1`, context], { DOCKER_CONFIG: await dockerConfig(path.join(scratch.path, 'docker-none'), {}) });
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`ERROR: failed to build linux/(amd64|arm64): failed to push ${locked.host.replaceAll('.', '\\.')}/team/app: .*401 Unauthorized`), refused.stderr);
    assert.equal((await locked.request('/v2/team/app/manifests/1')).status, 404);

    const metadataFile = path.join(scratch.path, 'locked-meta.json');
    const result = await slipway(['--platform', 'linux/amd64,linux/arm64', '--push', '-t', `${locked.host}/team/app:1`, '-t', `${locked.host}/team/app:latest`, '--metadata-file', metadataFile, context]);
    assert.equal(result.code, 0, result.stderr);
    await expectIndex(locked, 'team/app', '1', metadataFile);
    const latest = await locked.request('/v2/team/app/manifests/latest', { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(latest.headers['docker-content-digest'], JSON.parse(await fs.readFile(metadataFile, 'utf8'))['containerimage.digest'], 'every tag names the index');
  });

  test('one platform --push: the image the builder pushed is under the tag', async () => {
    const metadataFile = path.join(scratch.path, 'single-meta.json');
    const result = await slipway(['--platform', 'linux/arm64', '--push', '-t', `${locked.host}/single:1`, '--metadata-file', metadataFile, await multiPlatformContext('ctx-single-push')]);
    assert.equal(result.code, 0, result.stderr);
    const metadata = JSON.parse(await fs.readFile(metadataFile, 'utf8')) as Record<string, string>;
    const res = await locked.request('/v2/single/manifests/1', { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-content-digest'], metadata['containerimage.digest']);
  });
});
