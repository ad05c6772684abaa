import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError } from '../src/cliError.js';
import { loadRegistryCredentials, credentialKey, DOCKER_HUB_KEY } from '../src/build/registryCredentials.js';

// Real config.json files in temp folders, and real docker-credential-* programs on PATH.

let root: string;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'slipway-registry-credentials-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const b64 = (s: string): string => Buffer.from(s).toString('base64');

interface Case {
  dir: string;
  bin: string;
  env: Record<string, string>;
}

async function freshCase(config?: unknown): Promise<Case> {
  const dir = await mkdtemp(path.join(root, 'case-'));
  const bin = path.join(dir, 'bin');
  await mkdir(bin);
  const dockerConfig = path.join(dir, 'docker');
  await mkdir(dockerConfig);
  if (config !== undefined) await writeFile(path.join(dockerConfig, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return { dir, bin, env: { DOCKER_CONFIG: dockerConfig, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: dir } };
}

/**
 * A credential helper as a shell script: it appends "ARGS|STDIN" to calls.log, then prints
 * `stdout`, writes `stderr` and exits with `code`.
 */
async function helper(c: Case, name: string, answer: { stdout?: string; stderr?: string; code?: number }): Promise<string> {
  const log = path.join(c.dir, `${name}.calls.log`);
  const script = [
    '#!/bin/sh',
    'input=$(cat)',
    `printf '%s|%s\\n' "$*" "$input" >> '${log}'`,
    answer.stdout !== undefined ? `printf '%s' '${answer.stdout.replaceAll("'", "'\\''")}'` : '',
    answer.stderr !== undefined ? `printf '%s\\n' '${answer.stderr.replaceAll("'", "'\\''")}' >&2` : '',
    `exit ${answer.code ?? 0}`,
    '',
  ].join('\n');
  const file = path.join(c.bin, `docker-credential-${name}`);
  await writeFile(file, script);
  await chmod(file, 0o755);
  return log;
}

async function calls(log: string): Promise<string[]> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l !== '');
}

async function refusal(promise: Promise<unknown> | (() => unknown)): Promise<CliError> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (err) {
    assert.ok(err instanceof CliError, `expected a CliError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a CliError, got success');
}

test('no config.json: every registry is anonymous', async () => {
  const c = await freshCase();
  const creds = loadRegistryCredentials(c.env);
  assert.equal(creds.configFile, undefined);
  assert.equal(await creds.forHost('127.0.0.1:5000'), undefined);
});

test('auths: base64 auth, separate username/password, identity token, and keys with scheme and path', async () => {
  const c = await freshCase({
    auths: {
      '127.0.0.1:5000': { auth: b64('alice:pa:ss word') },
      'https://registry.example.com/v1/': { auth: b64('bob:secret2') },
      'plain.example.com': { username: 'carol', password: 'pw3' },
      'oauth.example.com': { identitytoken: 'refresh-token-4' },
      'empty.example.com': {},
    },
    psFormat: 'kept as the user had it',
  });
  const creds = loadRegistryCredentials(c.env);
  assert.equal(creds.configFile, path.join(c.env.DOCKER_CONFIG!, 'config.json'));
  // The password is everything after the first colon.
  assert.deepEqual(await creds.forHost('127.0.0.1:5000'), { kind: 'basic', username: 'alice', password: 'pa:ss word' });
  assert.deepEqual(await creds.forHost('registry.example.com'), { kind: 'basic', username: 'bob', password: 'secret2' });
  assert.deepEqual(await creds.forHost('plain.example.com'), { kind: 'basic', username: 'carol', password: 'pw3' });
  assert.deepEqual(await creds.forHost('oauth.example.com'), { kind: 'identityToken', token: 'refresh-token-4', username: '' });
  assert.equal(await creds.forHost('empty.example.com'), undefined);
  assert.equal(await creds.forHost('127.0.0.1:5001'), undefined, 'another port is another registry');
  assert.equal(await creds.forHost('other.example.com'), undefined);
});

test("Docker Hub's credentials are found under https://index.docker.io/v1/ whatever name BuildKit asks with", async () => {
  const c = await freshCase({ auths: { [DOCKER_HUB_KEY]: { auth: b64('hubuser:hubpass') } } });
  const creds = loadRegistryCredentials(c.env);
  for (const host of ['registry-1.docker.io', 'docker.io', 'index.docker.io']) {
    assert.equal(credentialKey(host), DOCKER_HUB_KEY);
    assert.deepEqual(await creds.forHost(host), { kind: 'basic', username: 'hubuser', password: 'hubpass' }, host);
  }
});

test('without DOCKER_CONFIG the file is ~/.docker/config.json of the HOME given', async () => {
  const c = await freshCase();
  await mkdir(path.join(c.dir, '.docker'));
  await writeFile(path.join(c.dir, '.docker', 'config.json'), JSON.stringify({ auths: { 'r.example.com': { auth: b64('u:p') } } }));
  const creds = loadRegistryCredentials({ HOME: c.dir, PATH: c.env.PATH });
  assert.equal(creds.configFile, path.join(c.dir, '.docker', 'config.json'));
  assert.deepEqual(await creds.forHost('r.example.com'), { kind: 'basic', username: 'u', password: 'p' });
});

test('credHelpers: the host is sent on stdin to `docker-credential-NAME get`; its answer is used, asked once per host', async () => {
  const c = await freshCase({ credHelpers: { '127.0.0.1:5000': 'slipwaytest' }, auths: { '127.0.0.1:5000': { auth: b64('file:ignored') } } });
  const log = await helper(c, 'slipwaytest', { stdout: JSON.stringify({ ServerURL: '127.0.0.1:5000', Username: 'helperuser', Secret: 'helper secret' }) });
  const creds = loadRegistryCredentials(c.env);
  const [a, b] = await Promise.all([creds.forHost('127.0.0.1:5000'), creds.forHost('127.0.0.1:5000')]);
  assert.deepEqual(a, { kind: 'basic', username: 'helperuser', password: 'helper secret' });
  assert.deepEqual(b, a);
  assert.deepEqual(await calls(log), ['get|127.0.0.1:5000']);
  // A host with no helper entry and no credsStore falls back to the file.
  assert.equal(await creds.forHost('127.0.0.1:5001'), undefined);
});

test('credsStore answers for every host without a credHelpers entry; <token> means an identity token; "not found" is anonymous', async () => {
  const c = await freshCase({
    credsStore: 'storetest',
    credHelpers: { 'special.example.com': 'specialtest' },
    auths: { 'store.example.com': {} },
  });
  const storeLog = await helper(c, 'storetest', { stdout: JSON.stringify({ ServerURL: 'x', Username: '<token>', Secret: 'id-token-7' }) });
  const specialLog = await helper(c, 'specialtest', { stdout: 'credentials not found in native keychain', code: 1 });
  const creds = loadRegistryCredentials(c.env);
  assert.deepEqual(await creds.forHost('store.example.com'), { kind: 'identityToken', token: 'id-token-7', username: '' });
  assert.equal(await creds.forHost('special.example.com'), undefined);
  assert.deepEqual(await creds.forHost('registry-1.docker.io'), { kind: 'identityToken', token: 'id-token-7', username: '' });
  assert.deepEqual(await calls(storeLog), ['get|store.example.com', `get|${DOCKER_HUB_KEY}`]);
  assert.deepEqual(await calls(specialLog), ['get|special.example.com']);
});

test('a failing helper is a CONFIG_INVALID error naming the helper, the registry and its stderr; a missing one says it is not on PATH', async () => {
  const c = await freshCase({ credHelpers: { 'broken.example.com': 'brokentest', 'missing.example.com': 'nosuchhelpertest', 'garbled.example.com': 'garbledtest' } });
  await helper(c, 'brokentest', { stderr: 'keychain is locked', code: 3 });
  await helper(c, 'garbledtest', { stdout: '{"Username":"u","Password":"not-the-field"}' });
  const creds = loadRegistryCredentials(c.env);
  const broken = await refusal(creds.forHost('broken.example.com'));
  assert.equal(broken.code, 'CONFIG_INVALID');
  assert.match(broken.message, /docker-credential-brokentest/);
  assert.match(broken.message, /broken\.example\.com/);
  assert.match(broken.message, /code 3/);
  assert.match(broken.message, /keychain is locked/);
  const missing = await refusal(creds.forHost('missing.example.com'));
  assert.match(missing.message, /docker-credential-nosuchhelpertest was not found on PATH/);
  const garbled = await refusal(creds.forHost('garbled.example.com'));
  assert.match(garbled.message, /docker-credential-garbledtest/);
  assert.match(garbled.message, /expected JSON \{"Username": string, "Secret": string\}/);
  assert.doesNotMatch(garbled.message, /not-the-field/, 'what a helper answered may be a secret: it is not shown');
});

test('a failed helper is asked again on the next request (a locked keychain can be unlocked)', async () => {
  const c = await freshCase({ credHelpers: { 'flaky.example.com': 'flakytest' } });
  const log = await helper(c, 'flakytest', { stderr: 'locked', code: 1 });
  const creds = loadRegistryCredentials(c.env);
  await refusal(creds.forHost('flaky.example.com'));
  await helper(c, 'flakytest', { stdout: JSON.stringify({ Username: 'now', Secret: 'open' }) });
  assert.deepEqual(await creds.forHost('flaky.example.com'), { kind: 'basic', username: 'now', password: 'open' });
  assert.equal((await calls(log)).length, 2);
});

test('a malformed config.json is refused when loaded, naming the file and every problem', async () => {
  const notJson = await freshCase('{"auths": {');
  const e1 = await refusal(() => loadRegistryCredentials(notJson.env));
  assert.equal(e1.code, 'CONFIG_INVALID');
  assert.match(e1.message, /config\.json is not valid JSON/);
  assert.ok(e1.message.includes(path.join(notJson.env.DOCKER_CONFIG!, 'config.json')));

  const wrongShapes = await freshCase({
    auths: { 'a.example.com': { auth: 'not base64!' }, 'b.example.com': 'user:pass', 'c.example.com': { username: 7 } },
    credHelpers: { 'd.example.com': 'bad name/../x' },
    credsStore: 42,
  });
  const e2 = await refusal(() => loadRegistryCredentials(wrongShapes.env));
  assert.equal(e2.code, 'CONFIG_INVALID');
  for (const expected of [
    /auths\["a\.example\.com"\]\.auth must be base64 of USER:PASSWORD/,
    /auths\["b\.example\.com"\] must be an object, got a string/,
    /auths\["c\.example\.com"\]\.username must be a string, got a number/,
    /credHelpers\["d\.example\.com"\]: "bad name\/\.\.\/x" is not a helper name/,
    /"credsStore" must be a helper name \(a string\), got a number/,
  ]) {
    assert.match(e2.message, expected);
  }
  assert.doesNotMatch(e2.message, /user:pass/);

  const array = await freshCase('[1, 2]');
  assert.match((await refusal(() => loadRegistryCredentials(array.env))).message, /expected a JSON object, got an array/);
  // The Docker CLI takes an empty file as an empty configuration.
  const empty = await freshCase('');
  assert.equal(await loadRegistryCredentials(empty.env).forHost('x.example.com'), undefined);
});

test('slipway build refuses a malformed config.json before any build, among its other problems (exit 2)', async () => {
  const c = await freshCase('{"auths": "not an object"}');
  const context = path.join(c.dir, 'ctx');
  await mkdir(context);
  await writeFile(path.join(context, 'Dockerfile'), 'FROM scratch\n');
  const bin = fileURLToPath(new URL('../bin/slipway.mjs', import.meta.url));
  const result = spawnSync(process.execPath, [bin, 'build', '--platform', 'linux/amd64', '--progress=plain', context], {
    env: { ...c.env, SLIPWAY_GATEWAY: 'https://127.0.0.1:9', SLIPWAY_TOKEN: 'not-used' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(result.status, 2, result.stderr);
  assert.match(result.stderr, /"auths" must be an object of registry -> credentials, got a string/);
  assert.ok(result.stderr.includes(path.join(c.env.DOCKER_CONFIG!, 'config.json')), result.stderr);
});
