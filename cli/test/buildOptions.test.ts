import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseCommandLine } from '../src/commandLine.js';
import { buildCommandSpec } from '../src/build/buildCommand.js';
import { buildOptionsOf, frontendAttrsOf } from '../src/build/buildOptions.js';

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
    const { problems } = parse(['--push', '--output', 'type=docker,dest=x.tar', '--platform', 'linux/s390x', '--progress', 'tty', '--secret', 'id=missing,env=NOPE', dir]);
    const all = problems.join('\n');
    assert.match(all, /--push is not supported/);
    assert.match(all, /type=docker is not supported/);
    assert.match(all, /linux\/s390x/);
    assert.match(all, /--progress/);
    assert.match(all, /NOPE is not set/);
    assert.equal(problems.length, 5);
  });
  const { problems } = parse(['/nonexistent-context']);
  assert.match(problems.join('\n'), /not a folder/);
});
