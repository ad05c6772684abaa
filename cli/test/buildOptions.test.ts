import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { once } from 'node:events';
import { parseCommandLine } from '../src/commandLine.js';
import { buildCommandSpec } from '../src/build/buildCommand.js';
import { buildOptionsOf, frontendAttrsOf } from '../src/build/buildOptions.js';
import { checkBuilderCache, solveCacheOf } from '../src/build/cacheOptions.js';

async function withContext(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-opts-'));
  try {
    await writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\n');
    await writeFile(path.join(dir, 'secret.txt'), 'pw');
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function parse(argv: string[], env: Record<string, string> = {}, cwd = '/') {
  const problems: string[] = [];
  const line = parseCommandLine(buildCommandSpec(), argv, problems);
  const options = buildOptionsOf(line, env, cwd, 'linux/amd64', problems);
  return { options, problems };
}

test('buildx flags become the dockerfile.v0 frontend attributes, per platform', async () => {
  await withContext(async (dir) => {
    const { options, problems } = parse(['-f', path.join(dir, 'Dockerfile'), '-t', 'app:1', '--build-arg', 'A=1', '--build-arg', 'FROM_ENV', '--target', 'final', '--platform', 'linux/amd64,linux/arm64', '--no-cache', '--label', 'team=x', '-o', 'out', '--secret', `id=s,src=${path.join(dir, 'secret.txt')}`, '--secret', 'id=e,env=E', dir], { FROM_ENV: 'v', E: 'ev' });
    assert.deepEqual(problems, []);
    assert.deepEqual(options.platforms, ['linux/amd64', 'linux/arm64']);
    assert.deepEqual(options.output, { type: 'local', dest: 'out' });
    assert.deepEqual(options.secrets.map((s) => [s.id, s.data.toString()]), [['s', 'pw'], ['e', 'ev']]);
    assert.deepEqual(frontendAttrsOf(options, 'linux/arm64'), { filename: 'Dockerfile', platform: 'linux/arm64', target: 'final', 'no-cache': '', 'build-arg:A': '1', 'build-arg:FROM_ENV': 'v', 'label:team': 'x' });
  });
});

test('what is not supported yet, and what is wrong, is refused by name, all at once', async () => {
  await withContext(async (dir) => {
    const { problems } = parse(['--platform', 'linux/s390x', '--progress', 'fancy', '--secret', 'id=missing,env=NOPE', dir]);
    const all = problems.join('\n');
    assert.match(all, /linux\/s390x/);
    assert.match(all, /--progress must be one of auto, tty, plain, quiet, rawjson; got 'fancy'/);
    assert.match(all, /NOPE is not set/);
    assert.equal(problems.length, 3);
  });
  const { problems } = parse(['/nonexistent-context']);
  assert.match(problems.join('\n'), /not a folder/);
});

test('--progress takes buildx\'s five modes; BUILDKIT_PROGRESS is the default, else auto', async () => {
  await withContext(async (dir) => {
    for (const mode of ['auto', 'tty', 'plain', 'quiet', 'rawjson'] as const) {
      const { options, problems } = parse(['--progress', mode, dir]);
      assert.deepEqual(problems, []);
      assert.equal(options.progress, mode);
    }
    assert.equal(parse([dir]).options.progress, 'auto');
    assert.equal(parse([dir], { BUILDKIT_PROGRESS: 'rawjson' }).options.progress, 'rawjson');
    assert.equal(parse(['--progress=plain', dir], { BUILDKIT_PROGRESS: 'rawjson' }).options.progress, 'plain', 'the flag wins');
    assert.match(parse([dir], { BUILDKIT_PROGRESS: 'loud' }).problems.join('\n'), /BUILDKIT_PROGRESS must be one of .*; got 'loud'/);
  });
});

test('--pull asks the frontend to resolve base images at the registry', async () => {
  await withContext(async (dir) => {
    const { options, problems } = parse(['--pull', dir]);
    assert.deepEqual(problems, []);
    assert.equal(frontendAttrsOf(options, 'linux/amd64')['image-resolve-mode'], 'pull');
    assert.equal(frontendAttrsOf(parse([dir]).options, 'linux/amd64')['image-resolve-mode'], undefined);
  });
});

test('--cache-from/--cache-to become the Solve request\'s cache imports and exports, as buildx reads them', async () => {
  await withContext(async (dir) => {
    const { options, problems } = parse(['--cache-from', '127.0.0.1:5000/app:cache', '--cache-from', 'type=registry,ref=r/b:c', '--cache-to', 'type=registry,ref=127.0.0.1:5000/app:cache,mode=max,image-manifest=true', '--cache-to', 'type=inline', dir]);
    assert.deepEqual(problems, []);
    assert.deepEqual(solveCacheOf(options.cache, 'linux/amd64', ['linux/amd64']), {
      Imports: [
        { Type: 'registry', Attrs: { ref: '127.0.0.1:5000/app:cache' } },
        { Type: 'registry', Attrs: { ref: 'r/b:c' } },
      ],
      Exports: [
        { Type: 'registry', Attrs: { ref: '127.0.0.1:5000/app:cache', mode: 'max', 'image-manifest': 'true' } },
        { Type: 'inline', Attrs: {} },
      ],
    });
    // The dockerfile frontend loads imported cache, so it gets the imports as buildx's client passes them.
    assert.deepEqual(JSON.parse(frontendAttrsOf(options, 'linux/amd64')['cache-imports']!), [
      { Type: 'registry', Attrs: { ref: '127.0.0.1:5000/app:cache' } },
      { Type: 'registry', Attrs: { ref: 'r/b:c' } },
    ]);
    assert.equal(frontendAttrsOf(parse([dir]).options, 'linux/amd64')['cache-imports'], undefined);
    // buildx: the BUILDKIT_INLINE_CACHE build arg asks for inline cache too.
    assert.deepEqual(parse(['--build-arg', 'BUILDKIT_INLINE_CACHE=1', dir]).options.cache.exports, [{ type: 'inline', attrs: {} }]);
    assert.deepEqual(parse([dir]).options.cache, { imports: [], exports: [] });
  });
});

test('cache flags that are wrong or need what Slipway does not serve are refused with the reason, all at once', async () => {
  await withContext(async (dir) => {
    const { problems } = parse(['--cache-to', 'type=local', '--cache-to', 'type=registry,mode=max', '--cache-to', 'type=registry,ref=r/a:1,mode=most,colour=red', '--cache-from', 'type=s4,ref=x', '--cache-from', 'ref=x', '--cache-from', 'type=inline', '--cache-to', 'type=gha', dir]);
    const all = problems.join('\n');
    assert.match(all, /--cache-to type=local needs dest=DIR/);
    assert.match(all, /--cache-to type=local is not supported by slipway build: it needs a content store served from this machine/);
    assert.match(all, /--cache-to type=registry needs ref=/);
    assert.match(all, /--cache-to mode must be min or max; got 'most'/);
    assert.match(all, /--cache-to type=registry: unknown option\(s\) colour/);
    assert.match(all, /--cache-from: unknown cache type 's4'; expected registry/);
    assert.match(all, /--cache-from needs type=registry; got 'ref=x'/);
    assert.match(all, /--cache-from type=inline is not a cache source/);
    assert.match(all, /--cache-to type=gha is not supported by slipway build: it needs GitHub Actions cache credentials/);
    assert.equal(problems.length, 9, all);
  });
});

test('--ssh forwards agent sockets: default from SSH_AUTH_SOCK, ID=SOCKET; a missing or wrong socket is refused with the reason', async () => {
  await withContext(async (dir) => {
    const socket = path.join(dir, 'agent.sock');
    const server = net.createServer().listen(socket);
    await once(server, 'listening');
    try {
      const { options, problems } = parse(['--ssh', 'default', '--ssh', `deploy=${socket}`, dir], { SSH_AUTH_SOCK: socket });
      assert.deepEqual(problems, []);
      assert.deepEqual(options.ssh, [{ id: 'default', socket }, { id: 'deploy', socket }]);
      const bad = parse(['--ssh', 'default', '--ssh', `key=${path.join(dir, 'secret.txt')}`, '--ssh', `gone=${path.join(dir, 'nope.sock')}`, '--ssh', `deploy=${socket}`, '--ssh', `deploy=${socket}`, '--ssh', '=x', '--ssh', `two=${socket},${socket}`, '--ssh', `dir=${dir}`, dir]);
      const all = bad.problems.join('\n');
      assert.match(all, /--ssh default: no ssh-agent: SSH_AUTH_SOCK is not set/);
      assert.match(all, /--ssh key: .*secret\.txt is not a private key \(expected OpenSSH or PEM format\)/);
      assert.match(all, /--ssh gone: .*nope\.sock does not exist/);
      assert.match(all, /--ssh deploy is given twice/);
      assert.match(all, /--ssh needs an ID/);
      assert.match(all, /--ssh two: one ssh-agent socket per ID; got 2/);
      assert.match(all, /--ssh dir: .* is neither a socket nor a file/);
      assert.equal(bad.problems.length, 7, all);
      const mixed = parse(['--ssh', `m=${socket},${path.join(dir, 'Dockerfile')}`, dir]).problems.join('\n');
      assert.match(mixed, /--ssh m: give an ssh-agent socket or private key files, not both/);
    } finally {
      server.close();
    }
  });
});

test('a builder on Docker\'s classic image store may export cache inline only: anything else is refused before the solve, by name', async () => {
  await withContext(async (dir) => {
    const classic = { exporters: ['local', 'tar', 'moby'], description: "Docker Engine's BuildKit with the classic image store (worker moby)" };
    const modern = { exporters: ['local', 'tar', 'image', 'docker', 'oci', 'moby'], description: 'BuildKit' };
    const registry = parse(['--cache-to', 'type=registry,ref=r/a:c', '--cache-to', 'type=inline', dir]).options.cache;
    assert.throws(() => checkBuilderCache(registry, classic, 'linux/amd64'), /the linux\/amd64 builder cannot do --cache-to type=registry: .*classic image store.* exports cache inline only/);
    checkBuilderCache(registry, modern, 'linux/amd64');
    checkBuilderCache(parse(['--cache-to', 'type=inline', '--cache-from', 'r/a:c', dir]).options.cache, classic, 'linux/amd64');
  });
});

test('with several platforms each platform\'s registry cache has its own tag, on export and import, so solves on different builders do not overwrite each other', async () => {
  await withContext(async (dir) => {
    const { options, problems } = parse(['--platform', 'linux/amd64,linux/arm64', '--cache-from', 'reg:5000/app:cache', '--cache-from', 'reg:5000/untagged', '--cache-from', 'reg:5000/app@sha256:' + 'a'.repeat(64), '--cache-to', 'type=registry,ref=reg:5000/app:cache,mode=max', '--cache-to', 'type=inline', dir]);
    assert.deepEqual(problems, []);
    const arm = solveCacheOf(options.cache, 'linux/arm64', options.platforms);
    assert.deepEqual(arm.Imports.map((e) => e.Attrs['ref']), ['reg:5000/app:cache-linux-arm64', 'reg:5000/untagged:latest-linux-arm64', 'reg:5000/app@sha256:' + 'a'.repeat(64)]);
    assert.deepEqual(arm.Exports, [{ Type: 'registry', Attrs: { ref: 'reg:5000/app:cache-linux-arm64', mode: 'max' } }, { Type: 'inline', Attrs: {} }]);
    assert.equal(solveCacheOf(options.cache, 'linux/amd64', options.platforms).Exports[0]!.Attrs['ref'], 'reg:5000/app:cache-linux-amd64');
    assert.equal(JSON.parse(frontendAttrsOf(options, 'linux/amd64')['cache-imports']!)[0].Attrs.ref, 'reg:5000/app:cache-linux-amd64', 'the frontend imports the same per-platform ref');
    assert.deepEqual(options.cache.exports[0]!.attrs['ref'], 'reg:5000/app:cache', 'the options themselves are left as given');
  });
});
