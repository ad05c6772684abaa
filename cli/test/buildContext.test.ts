import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PathPatterns } from '../src/build/pathPatterns.js';
import { listContext } from '../src/build/contextSource.js';
import { goModeOf, kindOf, unixPermOf } from '../src/build/fsutilPacket.js';

test('.dockerignore patterns: folders, wildcards, ** and exceptions, the last match winning', () => {
  const p = new PathPatterns(['node_modules', '*.log', '**/*.tmp', 'docs/**', '!docs/keep.md', '# a comment', '/abs.txt']);
  assert.equal(p.matches('node_modules'), true);
  assert.equal(p.matches('node_modules/x/y.js'), true, 'a folder pattern takes what is inside');
  assert.equal(p.matches('a.log'), true);
  assert.equal(p.matches('sub/a.log'), false, '* does not cross folders');
  assert.equal(p.matches('deep/er/b.tmp'), true);
  assert.equal(p.matches('docs/x.md'), true);
  assert.equal(p.matches('docs/keep.md'), false, '! re-includes');
  assert.equal(p.matches('abs.txt'), true, 'a leading slash is the context root');
  assert.equal(p.matches('src/main.ts'), false);
  assert.equal(p.mayHoldMatches('docs', true), true);
  assert.equal(p.mayHoldMatches('src', true), false);
});

test('the walk sends folders before what they hold, in Go byte order, without ignored paths', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-ctx-'));
  try {
    await mkdir(path.join(dir, 'a'));
    await writeFile(path.join(dir, 'a', 'b'), 'b');
    await writeFile(path.join(dir, 'a.b'), 'ab');
    await writeFile(path.join(dir, 'Z'), 'z');
    await writeFile(path.join(dir, 'run.sh'), '#!/bin/sh\n');
    await chmod(path.join(dir, 'run.sh'), 0o755);
    await writeFile(path.join(dir, 'x.tmp'), 'tmp');
    await symlink('run.sh', path.join(dir, 'link'));
    await mkdir(path.join(dir, 'ignored'));
    await writeFile(path.join(dir, 'ignored', 'f'), 'f');
    await writeFile(path.join(dir, 'ignored', 'keep'), 'k');
    const entries = await listContext(dir, new PathPatterns([]), new PathPatterns(['*.tmp', 'ignored', '!ignored/keep']));
    assert.deepEqual(
      entries.map((e) => e.stat.path),
      // 'a' and its contents come before 'a.b' although '.' < '/': folders are walked as they are met.
      ['Z', 'a', 'a/b', 'a.b', 'ignored', 'ignored/keep', 'link', 'run.sh'],
    );
    const byPath = new Map(entries.map((e) => [e.stat.path, e.stat]));
    assert.equal(kindOf(byPath.get('a')!.mode), 'dir');
    assert.equal(kindOf(byPath.get('link')!.mode), 'symlink');
    assert.equal(byPath.get('link')!.linkname, 'run.sh');
    assert.equal(kindOf(byPath.get('run.sh')!.mode), 'file');
    assert.equal(unixPermOf(byPath.get('run.sh')!.mode), 0o755);
    assert.equal(byPath.get('a.b')!.size, '2');
    const only = await listContext(dir, new PathPatterns(['a/b']), new PathPatterns([]));
    assert.deepEqual(
      only.map((e) => e.stat.path),
      ['a', 'a/b'],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("Go's FileMode bits round-trip through Unix modes", () => {
  assert.equal(goModeOf(0o040755) >>> 0, (2 ** 31 + 0o755) >>> 0);
  assert.equal(goModeOf(0o120777), 2 ** 27 + 0o777);
  assert.equal(unixPermOf(goModeOf(0o104755)), 0o4755);
  assert.equal(kindOf(goModeOf(0o100644)), 'file');
  assert.equal(kindOf(goModeOf(0o010644)), 'other');
});
