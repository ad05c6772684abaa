// `slipway build` and registries: the builder pulls and pushes with the user's credentials, which
// it asks the CLI for through the session's Auth service (as buildx serves them), read from a
// config.json in the test's DOCKER_CONFIG; a real docker-registry behind htpasswd Basic auth.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startDockerd, startStack, makeBusyboxContext, runCommand, startRegistry, tempDir, BUSYBOX_PATH, SLIPWAY_BIN, type Dockerd, type Registry, type SlipwayStack, type TempDir } from '@slipway/e2e';

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
    baseEnv = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: scratch.path,
      SLIPWAY_GATEWAY: stack.gatewayUrl,
      SLIPWAY_TOKEN: await stack.clientToken('demo'),
      SLIPWAY_CA_CERT: stack.caPath,
    };
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
