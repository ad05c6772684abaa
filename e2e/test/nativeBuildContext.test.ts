// The context upload of `slipway build` at scale, end to end through the gateway and an agent in
// dockerd mode: 10,000 files in nested folders plus large ones, symlinks, modes and .dockerignore
// arrive byte-exact (checked through a type=local output of an image that COPYs the context), and
// a second build of the changed folder sends only what changed yet ends up exact, deleted and
// added files included.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startDockerd, startStack, runCommand, tempDir, SLIPWAY_BIN, BUSYBOX_PATH, type Dockerd, type SlipwayStack, type TempDir, slipwayClientEnv } from '@slipway/e2e';

interface Entry {
  kind: 'file' | 'dir' | 'symlink';
  mode: number;
  digest: string;
}

/** Every path under `root` (relative, slash-separated) with its kind, permission bits and content digest or link target. */
async function snapshot(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of await fs.readdir(dir)) {
      const abs = path.join(dir, name);
      const relPath = rel === '' ? name : `${rel}/${name}`;
      const st = await fs.lstat(abs);
      if (st.isSymbolicLink()) out.set(relPath, { kind: 'symlink', mode: 0, digest: await fs.readlink(abs) });
      else if (st.isDirectory()) {
        out.set(relPath, { kind: 'dir', mode: st.mode & 0o7777, digest: '' });
        await walk(abs, relPath);
      } else out.set(relPath, { kind: 'file', mode: st.mode & 0o7777, digest: createHash('sha256').update(await fs.readFile(abs)).digest('hex') });
    }
  };
  await walk(root, '');
  return out;
}

function assertSameTree(actual: Map<string, Entry>, expected: Map<string, Entry>, what: string): void {
  const missing = [...expected.keys()].filter((p) => !actual.has(p));
  const extra = [...actual.keys()].filter((p) => !expected.has(p));
  assert.deepEqual({ missing: missing.slice(0, 10), extra: extra.slice(0, 10) }, { missing: [], extra: [] }, `${what}: ${missing.length} paths missing, ${extra.length} unexpected`);
  const differing = [...expected].filter(([p, e]) => {
    const a = actual.get(p)!;
    return a.kind !== e.kind || a.digest !== e.digest || (e.kind !== 'symlink' && a.mode !== e.mode);
  });
  assert.deepEqual(
    differing.slice(0, 5).map(([p, e]) => ({ path: p, expected: e, actual: actual.get(p) })),
    [],
    `${what}: ${differing.length} of ${expected.size} paths differ`,
  );
}

/** What the image's /ctx must hold: the context without what .dockerignore leaves out (and without the Dockerfile, busybox copy aside). */
function expectedFrom(context: Map<string, Entry>): Map<string, Entry> {
  return new Map([...context].filter(([p]) => !p.startsWith('ignored') && !p.endsWith('.tmp')));
}

for (const flavor of ['20.10', '26'] as const) describe(`slipway build uploads a large context intact (dockerd ${flavor})`, () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let scratch: TempDir;
  let env: NodeJS.ProcessEnv;
  let contextDir: string;

  before(async () => {
    scratch = await tempDir('native-build-context');
    // No RUN step in these builds: the daemon leaves docker0 to whoever needs it.
    dockerd = await startDockerd({ flavor, bridge: 'none' });
    stack = await startStack();
    await stack.startAgent({ agentId: `context-${flavor.replace('.', '')}`, platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    env = await slipwayClientEnv(stack, scratch.path);
    contextDir = path.join(scratch.path, 'ctx');
    // 10,000 small files (empty ones among them) in 3 levels of folders, two 6 MB files, odd names,
    // modes, symlinks (one dangling, one to a folder), and paths .dockerignore leaves out.
    for (let i = 0; i < 10_000; i++) {
      const dir = path.join(contextDir, 'src', `a${i % 10}`, `b${Math.floor(i / 10) % 10}`, `c${Math.floor(i / 100) % 10}`);
      if (i < 1000) await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(path.join(dir, `f${Math.floor(i / 1000)}.txt`), randomBytes(i % 97 === 0 ? 0 : (i * 7919) % 4096));
    }
    await fs.mkdir(path.join(contextDir, 'big'));
    for (const name of ['one.bin', 'two.bin']) await fs.writeFile(path.join(contextDir, 'big', name), randomBytes(6 * 1024 * 1024 + 123));
    await fs.writeFile(path.join(contextDir, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    await fs.writeFile(path.join(contextDir, 'private.key'), 'k', { mode: 0o600 });
    await fs.writeFile(path.join(contextDir, 'name with spaces é.txt'), 'spaces\n');
    await fs.symlink('run.sh', path.join(contextDir, 'link-to-run'));
    await fs.symlink('src/a1', path.join(contextDir, 'link-to-folder'));
    await fs.symlink('nowhere/at/all', path.join(contextDir, 'dangling'));
    await fs.mkdir(path.join(contextDir, 'ignored'));
    await fs.writeFile(path.join(contextDir, 'ignored', 'secret.txt'), 'must not leave the machine\n');
    await fs.writeFile(path.join(contextDir, 'scratch.tmp'), 'ignored too\n');
    await fs.writeFile(path.join(contextDir, '.dockerignore'), 'ignored\n*.tmp\n');
    await fs.copyFile(BUSYBOX_PATH, path.join(contextDir, 'busybox'));
    await fs.writeFile(path.join(contextDir, 'Dockerfile'), 'FROM scratch\nCOPY . /ctx/\n');
  });
  after(async () => {
    await stack?.close();
    await dockerd?.stop();
    await scratch?.remove();
  });

  const build = async (dest: string): Promise<string> => {
    const result = await runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--progress=plain', '--output', `type=local,dest=${dest}`, contextDir], {
      env,
      allowFailure: true,
      timeoutMs: 480_000,
    });
    assert.equal(result.code, 0, `slipway build failed:\n${result.stderr.slice(-4000)}`);
    return result.stderr;
  };
  /** What the builder said it received for the context, in bytes. */
  const transferred = (progress: string): number => {
    const sizes = [...progress.matchAll(/transferring context: ([\d.]+)(B|kB|MB|GB)/g)].map((m) => Number(m[1]) * { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] as 'B']);
    assert.ok(sizes.length > 0, `no 'transferring context' line in:\n${progress.slice(-3000)}`);
    return Math.max(...sizes);
  };

  test('10,000 files, large files, symlinks and modes arrive byte-exact; .dockerignore holds', async () => {
    const dest = path.join(scratch.path, 'out1');
    const progress = await build(dest);
    const expected = expectedFrom(await snapshot(contextDir));
    assert.ok(expected.size > 11_000, `the context has ${expected.size} paths`);
    assertSameTree(await snapshot(path.join(dest, 'ctx')), expected, 'first build');
    assert.ok(transferred(progress) > 12e6, 'the whole context went up');
  });

  test('after changes, a second build sends only what changed and the result is exact (changed, added and deleted files)', async () => {
    await fs.writeFile(path.join(contextDir, 'src/a3/b4/c5/f0.txt'), 'changed content\n');
    await fs.writeFile(path.join(contextDir, 'src/a3/b4/c5/added.txt'), 'a new file\n');
    await fs.rm(path.join(contextDir, 'src/a7/b7/c7/f1.txt'));
    await fs.rm(path.join(contextDir, 'big/two.bin'));
    await fs.chmod(path.join(contextDir, 'src/a2/b2/c2/f2.txt'), 0o700);
    const dest = path.join(scratch.path, 'out2');
    const progress = await build(dest);
    assertSameTree(await snapshot(path.join(dest, 'ctx')), expectedFrom(await snapshot(contextDir)), 'second build');
    assert.ok(transferred(progress) < 2e6, `only the changes went up: ${transferred(progress)} bytes`);
  });
});
