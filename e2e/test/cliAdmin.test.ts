// The slipway program as an administrator and a developer use it, against a gateway serving the
// admin API: log in, create a project and a token, build through it, revoke it and see it
// refused; manage trust policies; and the credentials file kept private.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startStack, startEchoServer, runCommand, tempDir, SLIPWAY_BIN, type SlipwayStack, type EchoServer, type TempDir, type CommandResult } from '@slipway/e2e';

let stack: SlipwayStack;
let echo: EchoServer;
let home: TempDir;
let adminToken: string;
const scratch: TempDir[] = [];

async function freshConfig(name: string): Promise<string> {
  const dir = await tempDir(name);
  scratch.push(dir);
  return dir.path;
}

before(async () => {
  echo = await startEchoServer();
  stack = await startStack({ identity: true });
  await stack.startAgent({ agentId: 'admin-e2e-amd64', platform: 'linux/amd64', upstream: `buildkitd:${echo.address}` });
  home = await tempDir('cli-admin');
  adminToken = await stack.adminToken('alice');
});

after(async () => {
  await stack.close();
  await echo.close();
  await home.remove();
  for (const dir of scratch) await dir.remove();
});

function credentialsFile(config = home.path): string {
  return path.join(config, 'slipway', 'credentials.json');
}

/** Runs the real CLI with only the environment given (no inherited SLIPWAY_* or CI variables). */
function slipway(args: string[], options: { env?: Record<string, string>; input?: string | Buffer; config?: string } = {}): Promise<CommandResult> {
  return runCommand(process.execPath, [SLIPWAY_BIN, ...args], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', XDG_CONFIG_HOME: options.config ?? home.path, ...options.env },
    input: options.input,
    allowFailure: true,
    timeoutMs: 60_000,
  });
}

function ok(result: CommandResult, what: string): void {
  assert.equal(result.code, 0, `${what}: exit ${result.code}\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`);
}

function fails(result: CommandResult, code: number, message: RegExp): void {
  assert.equal(result.code, code, `expected exit ${code}, got ${result.code}: ${result.stderr}`);
  assert.match(result.stderr, message);
}

/** dial-stdio to the echo builder; resolves with the result once it checked what came back. */
async function dialEcho(env: Record<string, string>): Promise<CommandResult> {
  const payload = randomBytes(128 * 1024).toString('hex');
  const result = await slipway(['dial-stdio', '--platform', 'linux/amd64'], { env, input: payload });
  if (result.code === 0) assert.equal(result.stdout, payload, 'the builder echoed exactly what went in');
  return result;
}

test('log in as admin, create a project and a token, build with it, revoke it, and see it refused', async () => {
  // Login checks the token with the gateway and stores it, printing nothing of it.
  const login = await slipway(['login', '--admin', '--gateway', stack.gatewayUrl, '--ca-cert', stack.caPath, '--token-stdin'], { input: `${adminToken}\n` });
  ok(login, 'login --admin');
  assert.equal(login.stdout, '');
  assert.match(login.stderr, new RegExp(`Logged in to ${stack.gatewayUrl} as administrator alice`));
  assert.ok(!login.stderr.includes(adminToken), 'the token is never printed');
  const file = credentialsFile();
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { gateway: stack.gatewayUrl, caCert: stack.caPath, adminToken });

  // From here on nothing but the stored credentials says where the gateway is, or who we are.
  ok(await slipway(['projects', 'create', 'web']), 'projects create');
  fails(await slipway(['projects', 'create', 'web']), 16, /project 'web' already exists/);
  fails(await slipway(['projects', 'create', 'Not_A_Name', '--isolate-untrusted']), 14, /^slipway: error: invalid project: name must match/m);

  const table = await slipway(['projects', 'list']);
  ok(table, 'projects list');
  assert.match(table.stdout, /^NAME\s+ISOLATE UNTRUSTED\s+CREATED\nweb\s+no\s+\d{4}-/);
  const listed = await slipway(['projects', 'list', '--json']);
  ok(listed, 'projects list --json');
  assert.deepEqual((JSON.parse(listed.stdout) as { projects: Array<{ name: string }> }).projects.map((p) => p.name), ['web']);

  // The token alone on stdout: TOKEN=$(slipway tokens create web) works.
  const created = await slipway(['tokens', 'create', 'web', '--ttl', '1h', '--description', 'e2e build token']);
  ok(created, 'tokens create');
  assert.match(created.stdout, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/);
  const projectToken = created.stdout.trim();
  const id = /Created token ([0-9a-f-]{36}) for project web \(scopes build; expires /.exec(created.stderr)?.[1];
  assert.ok(id, created.stderr);

  const tokens = await slipway(['tokens', 'list', 'web']);
  ok(tokens, 'tokens list');
  assert.match(tokens.stdout, new RegExp(`^ID\\s+STATE\\s+SCOPES\\s+CREATED\\s+EXPIRES\\s+DESCRIPTION\\n${id}\\s+active\\s+build\\s+.*e2e build token\\n$`));
  assert.ok(!tokens.stdout.includes(projectToken), 'listing never shows a token');

  // The token builds: dial-stdio carries bytes to the builder and back.
  const env = { SLIPWAY_GATEWAY: stack.gatewayUrl, SLIPWAY_CA_CERT: stack.caPath };
  ok(await dialEcho({ ...env, SLIPWAY_TOKEN: projectToken }), 'dial-stdio with the new token');

  // Stored with slipway login, the same token builds with nothing in the environment.
  ok(await slipway(['login', '--token-stdin'], { input: projectToken }), 'login with the project token');
  assert.deepEqual(Object.keys(JSON.parse(fs.readFileSync(file, 'utf8')) as object).sort(), ['adminToken', 'caCert', 'gateway', 'token']);
  ok(await dialEcho({}), 'dial-stdio with stored credentials');

  ok(await slipway(['tokens', 'revoke', id]), 'tokens revoke');
  fails(await dialEcho({}), 3, /revoked/);
  fails(await dialEcho({ ...env, SLIPWAY_TOKEN: projectToken }), 3, /revoked/);
  // A revoked token cannot be logged in with either, and nothing changes on disk.
  const before = fs.readFileSync(file, 'utf8');
  fails(await slipway(['login', '--token', projectToken]), 3, /did not accept the project token: .*revoked.*; nothing was stored/);
  assert.equal(fs.readFileSync(file, 'utf8'), before);

  const after = await slipway(['tokens', 'list', 'web', '--json']);
  ok(after, 'tokens list --json');
  const records = (JSON.parse(after.stdout) as { tokens: Array<{ id: string; revokedAtMs?: number }> }).tokens;
  assert.equal(records.find((t) => t.id === id)?.revokedAtMs !== undefined, true);

  ok(await slipway(['projects', 'delete', 'web']), 'projects delete');
  fails(await slipway(['tokens', 'list', 'web']), 15, /no project named 'web'/);
});

test('trust policies: add, list, remove, with the gateway naming every problem of a bad one', async () => {
  const env = { SLIPWAY_GATEWAY: stack.gatewayUrl, SLIPWAY_CA_CERT: stack.caPath, SLIPWAY_ADMIN_TOKEN: adminToken };
  const config = await freshConfig('cli-admin-empty');
  ok(await slipway(['projects', 'create', 'api'], { env, config }), 'projects create');
  const add = await slipway(
    [
      'trust', 'add', 'api',
      '--issuer', 'https://token.actions.githubusercontent.com',
      '--audience', 'slipway',
      '--condition', 'repository=acme/api',
      '--condition', 'ref=refs/heads/*',
      '--untrusted-when', 'event_name=pull_request',
      '--id', 'gha-main',
      '--json',
    ],
    { env, config },
  );
  ok(add, 'trust add');
  assert.equal((JSON.parse(add.stdout) as { id: string }).id, 'gha-main');
  assert.match(add.stderr, /Added trust policy gha-main to project api/);

  const list = await slipway(['trust', 'list', 'api'], { env, config });
  ok(list, 'trust list');
  assert.match(list.stdout, /^ID\s+ISSUER\s+AUDIENCE\s+CONDITIONS\s+UNTRUSTED WHEN\ngha-main\s+https:\/\/token\.actions\.githubusercontent\.com\s+slipway\s+repository=acme\/api ref=refs\/heads\/\*\s+event_name=pull_request\n$/);

  // Every problem, in the gateway's words, in one answer.
  const bad = await slipway(['trust', 'add', 'api', '--issuer', 'http://insecure.example', '--audience', ' ', '--condition', 'event_name=push'], { env, config });
  fails(bad, 14, /issuer/);
  assert.match(bad.stderr, /audience is ' ', expected a non-empty string/);
  assert.match(bad.stderr, /conditions name no subject claim/);

  ok(await slipway(['trust', 'remove', 'api', 'gha-main'], { env, config }), 'trust remove');
  const empty = await slipway(['trust', 'list', 'api'], { env, config });
  ok(empty, 'trust list (empty)');
  assert.equal(empty.stdout, '');
  assert.match(empty.stderr, /Project api trusts no CI identity/);
  fails(await slipway(['trust', 'remove', 'api', 'gha-main'], { env, config }), 15, /has no trust policy 'gha-main'/);
  // Nothing was stored: every call went with the environment's token.
  assert.equal(fs.existsSync(credentialsFile(config)), false);
});

test('refusals: wrong kind of token, unknown subcommands and flags, a gateway without the admin API, a credentials file others can read', async () => {
  const env = { SLIPWAY_GATEWAY: stack.gatewayUrl, SLIPWAY_CA_CERT: stack.caPath };
  const config = await freshConfig('cli-admin-refusals');
  const projectToken = await stack.clientToken('demo');
  fails(await slipway(['projects', 'list'], { env: { ...env, SLIPWAY_ADMIN_TOKEN: projectToken }, config }), 3, /did not accept the admin token/);
  fails(await slipway(['login', '--admin', '--token', projectToken], { env, config }), 3, /this is a project token: use slipway login without --admin/);
  fails(await slipway(['login', '--token', adminToken], { env, config }), 3, /this is an admin token: use slipway login --admin/);
  // Without a terminal to ask, login without a token flag says how to give one.
  fails(await slipway(['login'], { env, config, input: adminToken }), 2, /no token given: pipe it in with --token-stdin/);
  assert.equal(fs.existsSync(credentialsFile(config)), false, 'a refused login stores nothing');

  fails(await slipway(['projects', 'rename', 'x'], { env, config }), 2, /unknown command 'slipway projects rename'; expected projects create, projects list, projects delete/);
  fails(await slipway(['tokens', 'create', 'web', '--forever'], { env, config }), 2, /unknown flag '--forever' for slipway tokens create/);
  fails(await slipway(['tokens', 'create', 'web', '--ttl', '1 week'], { env, config }), 2, /--ttl must be a whole number with a unit/);

  const plain = await startStack();
  try {
    fails(await slipway(['projects', 'list'], { env: { SLIPWAY_GATEWAY: plain.gatewayUrl, SLIPWAY_CA_CERT: plain.caPath, SLIPWAY_ADMIN_TOKEN: adminToken }, config }), 15, /does not serve the admin API/);
  } finally {
    await plain.close();
  }

  ok(await slipway(['login', '--admin', '--token-stdin'], { env, config, input: adminToken }), 'login --admin');
  fs.chmodSync(credentialsFile(config), 0o644);
  const refused = await slipway(['projects', 'list'], { config });
  fails(refused, 2, new RegExp(`accessible to other users \\(mode 0644\\).*chmod 600 ${credentialsFile(config).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.ok(!refused.stderr.includes(adminToken));
  fs.chmodSync(credentialsFile(config), 0o600);
  ok(await slipway(['projects', 'list'], { config }), 'projects list after chmod 600');

  ok(await slipway(['logout'], { config }), 'logout');
  assert.equal(fs.existsSync(credentialsFile(config)), false);
  fails(await slipway(['projects', 'list'], { config }), 2, /SLIPWAY_GATEWAY \(or --gateway\) is required.*\n.*no admin token/);
});
