import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { credentialsPath, readCredentials, removeCredentials, writeCredentials } from '../src/credentials.js';
import { runLogout } from '../src/login.js';
import { CliError } from '../src/cliError.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'slipway-credentials-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function fresh(): Promise<string> {
  return path.join(await mkdtemp(path.join(dir, 'case-')), 'slipway', 'credentials.json');
}

function mode(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

function refused(file: string, message: RegExp, uid?: number): CliError {
  let caught: unknown;
  try {
    readCredentials(file, uid);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof CliError, 'refused');
  assert.equal(caught.code, 'CONFIG_INVALID');
  assert.match(caught.message, message);
  return caught;
}

test('the file lives under XDG_CONFIG_HOME, else HOME/.config, else nowhere', () => {
  assert.equal(credentialsPath({ XDG_CONFIG_HOME: '/x', HOME: '/h' }), '/x/slipway/credentials.json');
  assert.equal(credentialsPath({ XDG_CONFIG_HOME: 'rel', HOME: '/h' }), '/h/.config/slipway/credentials.json');
  assert.equal(credentialsPath({ HOME: '/h' }), '/h/.config/slipway/credentials.json');
  assert.equal(credentialsPath({}), undefined);
});

test('written with mode 0600 in a directory of mode 0700, and read back', async () => {
  const file = await fresh();
  writeCredentials(file, { gateway: 'https://gw.example', caCert: '/ca.pem', token: 'p', adminToken: 'a' });
  assert.equal(mode(file), 0o600);
  assert.equal(mode(path.dirname(file)), 0o700);
  assert.deepEqual(readCredentials(file), { gateway: 'https://gw.example', caCert: '/ca.pem', token: 'p', adminToken: 'a' });
});

test('an existing directory open to others is closed to them before anything is written into it', async () => {
  const file = await fresh();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  fs.chmodSync(path.dirname(file), 0o755);
  writeCredentials(file, { gateway: 'https://gw.example', token: 'p' });
  assert.equal(mode(path.dirname(file)), 0o700);
});

test('a write replaces the file whole (a new inode, renamed into place) and leaves no temporary file', async () => {
  const file = await fresh();
  writeCredentials(file, { gateway: 'https://gw.example', token: 'old' });
  const before = fs.statSync(file).ino;
  writeCredentials(file, { gateway: 'https://gw.example', token: 'new' });
  assert.notEqual(fs.statSync(file).ino, before, 'the old file was not written in place');
  assert.equal(readCredentials(file)?.token, 'new');
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['credentials.json']);
});

test('a write that cannot be put in place fails cleanly: an error, no temporary file left', async () => {
  const file = await fresh();
  // A non-empty directory where the file should be: the rename must fail (even for root).
  fs.mkdirSync(path.join(file, 'occupied'), { recursive: true });
  assert.throws(() => writeCredentials(file, { gateway: 'https://gw.example', token: 'secret-token' }), (err: CliError) => {
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.match(err.message, /cannot write the credentials/);
    assert.ok(!err.message.includes('secret-token'));
    return true;
  });
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['credentials.json']);
});

test('a file readable by the group or the world is refused, saying how to fix it', async () => {
  const file = await fresh();
  writeCredentials(file, { gateway: 'https://gw.example', token: 'secret-token' });
  for (const m of [0o644, 0o640, 0o604, 0o620]) {
    fs.chmodSync(file, m);
    const err = refused(file, new RegExp(`mode 0${m.toString(8)}.*chmod 600 ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.ok(!err.message.includes('secret-token'));
  }
  fs.chmodSync(file, 0o400);
  assert.equal(readCredentials(file)?.token, 'secret-token');
});

test("a file owned by someone else is refused", async () => {
  const file = await fresh();
  writeCredentials(file, { gateway: 'https://gw.example', token: 'p' });
  refused(file, /belong to another user/, fs.statSync(file).uid + 1);
});

test('no file is no credentials; a damaged one is refused with what to do', async () => {
  const file = await fresh();
  assert.equal(readCredentials(file), undefined);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '{not json', { mode: 0o600 });
  refused(file, /not JSON; run slipway logout, then slipway login/);
  fs.writeFileSync(file, JSON.stringify({ token: 5 }));
  refused(file, /token is not a non-empty string; gateway is missing/);
});

test('logout removes the file; logout --admin forgets only the admin token', async () => {
  const file = await fresh();
  const said: string[] = [];
  const out = { stdout: (t: string) => said.push(`out:${t}`), stderr: (t: string) => said.push(t) };
  writeCredentials(file, { gateway: 'https://gw.example', token: 'p', adminToken: 'a' });
  runLogout(true, file, out);
  assert.deepEqual(readCredentials(file), { gateway: 'https://gw.example', token: 'p' });
  assert.equal(mode(file), 0o600);
  runLogout(true, file, out);
  runLogout(false, file, out);
  assert.equal(fs.existsSync(file), false);
  runLogout(false, file, out);
  assert.deepEqual(said, ['Forgot the admin token for https://gw.example.\n', 'No admin token is stored.\n', `Logged out: removed ${file}\n`, `Not logged in (no ${file}).\n`]);
  // An admin-only file goes away with its admin token.
  writeCredentials(file, { gateway: 'https://gw.example', adminToken: 'a' });
  runLogout(true, file, out);
  assert.equal(fs.existsSync(file), false);
  assert.equal(removeCredentials(file), false);
});
