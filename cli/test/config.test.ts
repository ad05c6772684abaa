import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { Env } from '@slipway/proto';
import { loadConfig, parseDuration, type AdminRequest, type CliCommand, type CliConfig, type LoginConfig } from '../src/config.js';
import { CliError } from '../src/cliError.js';
import { writeCredentials } from '../src/credentials.js';

const env = { SLIPWAY_GATEWAY: 'https://gw.example.com', SLIPWAY_TOKEN: 't' };
const adminEnv = { SLIPWAY_GATEWAY: 'https://gw.example.com', SLIPWAY_ADMIN_TOKEN: 'admin-t' };

let dir: string;
let caPath: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'slipway-config-'));
  caPath = path.join(dir, 'ca.pem');
  await import('node:fs/promises').then((fs) => fs.writeFile(caPath, '-----BEGIN CERTIFICATE-----\nnot really a CA: only read, never parsed\n-----END CERTIFICATE-----\n'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function tunnel(e: Env, argv: string[]): CliConfig {
  const command = loadConfig(e, argv);
  assert.ok(command.command === 'proxy' || command.command === 'dial-stdio', `got ${command.command}`);
  return command.config;
}

function admin(e: Env, argv: string[]): { request: AdminRequest; json: boolean; token: string } {
  const command = loadConfig(e, argv);
  assert.equal(command.command, 'admin');
  const c = command as Extract<CliCommand, { command: 'admin' }>;
  return { request: c.request, json: c.config.json, token: c.config.adminToken };
}

function login(e: Env, argv: string[]): LoginConfig {
  const command = loadConfig(e, argv);
  assert.equal(command.command, 'login');
  return (command as Extract<CliCommand, { command: 'login' }>).config;
}

function invalid(e: Env, argv: string[], ...parts: (string | RegExp)[]): CliError {
  let caught: unknown;
  try {
    loadConfig(e, argv);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof CliError, `expected a CliError for ${argv.join(' ')}`);
  assert.equal(caught.code, 'CONFIG_INVALID');
  for (const part of parts) {
    if (typeof part === 'string') assert.ok(caught.message.includes(part), `mentions ${part}: ${caught.message}`);
    else assert.match(caught.message, part);
  }
  return caught;
}

describe('proxy and dial-stdio', () => {
  test('--listen repeats and replaces SLIPWAY_LISTEN', () => {
    const config = tunnel({ ...env, SLIPWAY_LISTEN: 'unix:///ignored.sock' }, ['proxy', '--platform', 'linux/amd64', '--listen', 'unix:///a.sock', '--listen=tcp://127.0.0.1:0']);
    assert.deepEqual(config.listen, [
      { kind: 'unix', path: '/a.sock' },
      { kind: 'tcp', host: '127.0.0.1', port: 0 },
    ]);
    assert.equal(config.transport, 'auto');
    assert.deepEqual(config.credential, { kind: 'token', token: 't', source: 'flag or environment' });
  });

  test('SLIPWAY_LISTEN alone takes a comma-separated list', () => {
    const config = tunnel({ ...env, SLIPWAY_LISTEN: 'unix:///a.sock,unix:///b.sock', SLIPWAY_PLATFORM: 'linux/arm64' }, ['proxy']);
    assert.equal(config.listen.length, 2);
    assert.equal(config.platform, 'linux/arm64');
  });

  test('flags win over the environment', () => {
    const config = tunnel(
      { ...env, SLIPWAY_PROJECT: 'from-env', SLIPWAY_TRANSPORT: 'h2', SLIPWAY_LOG_LEVEL: 'debug' },
      ['dial-stdio', '--platform', 'linux/arm64', '--project', 'web', '--transport', 'websocket', '--token', 'flag-t', '--acquire-timeout-ms', '5000', '--build-idle-ms=0', '--connect-timeout-ms', '200'],
    );
    assert.equal(config.project, 'web');
    assert.equal(config.transport, 'websocket');
    assert.equal(config.logLevel, 'debug');
    assert.deepEqual(config.credential, { kind: 'token', token: 'flag-t', source: 'flag or environment' });
    assert.equal(config.acquireTimeoutMs, 5000);
    assert.equal(config.buildIdleMs, 0);
    assert.equal(config.connectTimeoutMs, 200);
    assert.deepEqual(config.listen, []);
  });

  test('every problem is reported at once', () => {
    invalid({}, ['proxy', '--listen', 'unix://relative.sock', '--transport', 'carrier-pigeon'], 'SLIPWAY_GATEWAY', 'no project token', '--platform', 'absolute path', 'SLIPWAY_TRANSPORT');
  });

  test('dial-stdio takes no --listen, and unknown flags are named', () => {
    invalid(env, ['dial-stdio', '--platform', 'linux/amd64', '--listen', 'unix:///a.sock', '--frobnicate'], "unknown flag '--listen' for slipway dial-stdio", "unknown flag '--frobnicate'");
  });

  test('a flag without its value, and a stray argument, are refused', () => {
    invalid(env, ['dial-stdio', 'extra', '--platform'], 'flag --platform needs a value', "unexpected argument 'extra'");
  });
});

describe('corporate networks', () => {
  test('SLIPWAY_CA_CERT and NODE_EXTRA_CA_CERTS both add to Node\'s roots, in that order', async () => {
    const extra = path.join(dir, 'extra.pem');
    await import('node:fs/promises').then((fs) => fs.writeFile(extra, '-----BEGIN CERTIFICATE-----\nthe machine\'s extra CA\n-----END CERTIFICATE-----\n'));
    const config = tunnel({ ...env, SLIPWAY_CA_CERT: caPath, NODE_EXTRA_CA_CERTS: extra }, ['proxy', '--platform', 'linux/amd64', '--listen', 'unix:///tmp/s.sock']);
    assert.deepEqual(config.caSources?.map((s) => [s.origin, s.path]), [['SLIPWAY_CA_CERT', caPath], ['NODE_EXTRA_CA_CERTS', extra]]);
    const bundle = config.ca?.toString('latin1') ?? '';
    assert.ok(bundle.indexOf('not really a CA') < bundle.indexOf("the machine's extra CA"), 'both, SLIPWAY_CA_CERT first');
    assert.ok(bundle.includes(tls.rootCertificates[0]!), "and Node's bundled roots");
    const alone = tunnel({ ...env, NODE_EXTRA_CA_CERTS: extra }, ['dial-stdio', '--platform', 'linux/amd64']);
    assert.deepEqual(alone.caSources?.map((s) => s.origin), ['NODE_EXTRA_CA_CERTS']);
    const none = tunnel(env, ['dial-stdio', '--platform', 'linux/amd64']);
    assert.equal(none.ca, undefined, "nothing added: Node's own store");
  });

  test('a CA file that cannot be read or holds no certificate is refused with the other problems', () => {
    invalid(
      { ...env, SLIPWAY_CA_CERT: path.join(dir, 'missing.pem'), NODE_EXTRA_CA_CERTS: path.join(dir, 'missing-extra.pem'), SLIPWAY_KEEPALIVE_MS: '-1' },
      ['dial-stdio', '--platform', 'linux/amd64'],
      /SLIPWAY_CA_CERT '.*missing\.pem' cannot be read/,
      /NODE_EXTRA_CA_CERTS '.*missing-extra\.pem' cannot be read/,
      'SLIPWAY_KEEPALIVE_MS',
    );
  });

  test('unusable proxy settings are configuration problems, reported up front', () => {
    invalid({ ...env, HTTPS_PROXY: 'socks5://proxy:1080' }, ['dial-stdio', '--platform', 'linux/amd64'], /only http:\/\/ proxies/);
    invalid({ ...env, HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: '10.0.0.0/33' }, ['projects', 'list', '--admin-token', 'a'], /NO_PROXY has invalid entries/);
  });

  test('--keepalive-ms (SLIPWAY_KEEPALIVE_MS) defaults to 20 s; 0 turns keepalives off', () => {
    assert.equal(tunnel(env, ['dial-stdio', '--platform', 'linux/amd64']).keepaliveMs, 20_000);
    assert.equal(tunnel({ ...env, SLIPWAY_KEEPALIVE_MS: '0' }, ['dial-stdio', '--platform', 'linux/amd64']).keepaliveMs, 0);
    assert.equal(tunnel({ ...env, SLIPWAY_KEEPALIVE_MS: '0' }, ['dial-stdio', '--platform', 'linux/amd64', '--keepalive-ms', '500']).keepaliveMs, 500);
  });
});

describe('doctor', () => {
  function doctor(e: Env, argv: string[] = []) {
    const command = loadConfig(e, ['doctor', ...argv]);
    assert.equal(command.command, 'doctor');
    return (command as Extract<CliCommand, { command: 'doctor' }>).config;
  }

  test('configuration problems become its first check instead of an exit; flags it does not know still refuse', () => {
    const config = doctor({ SLIPWAY_GATEWAY: 'https://gw.example.com', HOME: '/nonexistent-home', SLIPWAY_KEEPALIVE_MS: 'soon' });
    assert.equal(config.gatewayKnown, true);
    assert.equal(config.credential, undefined);
    assert.ok(config.problems.some((p) => p.startsWith('no project token')), config.problems.join('; '));
    assert.ok(config.problems.some((p) => p.includes('SLIPWAY_KEEPALIVE_MS')));
    assert.equal(doctor({ HOME: '/nonexistent-home' }).gatewayKnown, false);
    invalid(env, ['doctor', '--listen', 'unix:///x.sock'], "unknown flag '--listen' for slipway doctor");
  });

  test('checks both platforms unless told, and --json', () => {
    assert.deepEqual(doctor(env).platforms, ['linux/amd64', 'linux/arm64']);
    const one = doctor(env, ['--platform', 'linux/arm64', '--json']);
    assert.deepEqual(one.platforms, ['linux/arm64']);
    assert.equal(one.json, true);
    assert.equal(one.acquireTimeoutMs, 30_000, 'a doctor does not wait ten minutes for a builder');
    assert.ok(doctor(env, ['--platform', 'linux/s390x']).problems.some((p) => p.includes("got 'linux/s390x'")));
  });
});

describe('the project token from a CI job\'s OIDC identity', () => {
  test('with no token and a CI detected, the token is exchanged for SLIPWAY_PROJECT with audience slipway', () => {
    const config = tunnel({ SLIPWAY_GATEWAY: 'https://gw.example.com', GITLAB_CI: 'true', SLIPWAY_PROJECT: 'web' }, ['dial-stdio', '--platform', 'linux/amd64']);
    assert.deepEqual(config.credential, { kind: 'oidc', ci: 'gitlab', audience: 'slipway', project: 'web' });
  });

  test('SLIPWAY_OIDC_AUDIENCE (or --oidc-audience) sets the audience', () => {
    const config = tunnel({ SLIPWAY_GATEWAY: 'https://gw.example.com', GITHUB_ACTIONS: 'true', SLIPWAY_OIDC_AUDIENCE: 'a1' }, ['dial-stdio', '--platform', 'linux/amd64', '--project', 'web', '--oidc-audience', 'a2']);
    assert.deepEqual(config.credential, { kind: 'oidc', ci: 'github', audience: 'a2', project: 'web' });
  });

  test('a CI without SLIPWAY_PROJECT is told it is needed', () => {
    invalid({ SLIPWAY_GATEWAY: 'https://gw.example.com', BUILDKITE: 'true' }, ['dial-stdio', '--platform', 'linux/amd64'], 'SLIPWAY_PROJECT (or --project) is required to exchange this Buildkite job');
  });

  test('SLIPWAY_TOKEN wins over the CI identity', () => {
    const config = tunnel({ ...env, CIRCLECI: 'true' }, ['dial-stdio', '--platform', 'linux/amd64']);
    assert.equal(config.credential.kind, 'token');
  });
});

describe('stored credentials', () => {
  test('give the gateway, CA and token when nothing else does, and SLIPWAY_TOKEN overrides the token', async () => {
    const home = await mkdtemp(path.join(dir, 'xdg-'));
    writeCredentials(path.join(home, 'slipway', 'credentials.json'), { gateway: 'https://stored.example:8443', caCert: caPath, token: 'stored-t', adminToken: 'stored-admin' });
    const stored = tunnel({ XDG_CONFIG_HOME: home }, ['dial-stdio', '--platform', 'linux/amd64']);
    assert.equal(stored.gatewayUrl.origin, 'https://stored.example:8443');
    assert.deepEqual(stored.credential, { kind: 'token', token: 'stored-t', source: 'stored credentials' });
    assert.ok(stored.ca?.toString().includes('not really a CA'));

    const overridden = tunnel({ XDG_CONFIG_HOME: home, SLIPWAY_TOKEN: 'env-t' }, ['dial-stdio', '--platform', 'linux/amd64']);
    assert.deepEqual(overridden.credential, { kind: 'token', token: 'env-t', source: 'flag or environment' });
    assert.equal(overridden.gatewayUrl.origin, 'https://stored.example:8443');

    assert.equal(admin({ XDG_CONFIG_HOME: home }, ['projects', 'list']).token, 'stored-admin');
    assert.equal(admin({ XDG_CONFIG_HOME: home, SLIPWAY_ADMIN_TOKEN: 'env-admin' }, ['projects', 'list']).token, 'env-admin');
  });

  test('a stored token is never sent to another gateway than the one it was stored for', async () => {
    const home = await mkdtemp(path.join(dir, 'xdg-'));
    writeCredentials(path.join(home, 'slipway', 'credentials.json'), { gateway: 'https://stored.example', token: 'stored-t' });
    invalid({ XDG_CONFIG_HOME: home, SLIPWAY_GATEWAY: 'https://other.example' }, ['dial-stdio', '--platform', 'linux/amd64'], 'no project token (the stored credentials are for https://stored.example, not https://other.example)');
    // The same gateway spelled with its default port is the same origin.
    const same = tunnel({ XDG_CONFIG_HOME: home, SLIPWAY_GATEWAY: 'https://stored.example:443/' }, ['dial-stdio', '--platform', 'linux/amd64']);
    assert.equal(same.credential.kind === 'token' && same.credential.token, 'stored-t');
  });

  test('HOME/.config is used when XDG_CONFIG_HOME is unset or relative', async () => {
    const home = await mkdtemp(path.join(dir, 'home-'));
    writeCredentials(path.join(home, '.config', 'slipway', 'credentials.json'), { gateway: 'https://home.example', token: 'home-t' });
    const config = tunnel({ HOME: home, XDG_CONFIG_HOME: 'relative/dir' }, ['dial-stdio', '--platform', 'linux/amd64']);
    assert.equal(config.gatewayUrl.origin, 'https://home.example');
  });

  test('a credentials file others can read is refused with the fix, among the other problems', async () => {
    const home = await mkdtemp(path.join(dir, 'xdg-'));
    const file = path.join(home, 'slipway', 'credentials.json');
    writeCredentials(file, { gateway: 'https://stored.example', token: 'stored-t' });
    const { chmod } = await import('node:fs/promises');
    await chmod(file, 0o644);
    const err = invalid({ XDG_CONFIG_HOME: home }, ['dial-stdio'], `chmod 600 ${file}`, 'mode 0644', '--platform is required');
    assert.ok(!err.message.includes('stored-t'), 'the token is not in the message');
  });

  test('with gateway and token both given the credentials file is not read at all', async () => {
    const home = await mkdtemp(path.join(dir, 'xdg-'));
    const file = path.join(home, 'slipway', 'credentials.json');
    writeCredentials(file, { gateway: 'https://stored.example', token: 'stored-t' });
    const { chmod } = await import('node:fs/promises');
    await chmod(file, 0o644);
    assert.equal(tunnel({ ...env, XDG_CONFIG_HOME: home }, ['dial-stdio', '--platform', 'linux/amd64']).gatewayUrl.origin, 'https://gw.example.com');
  });
});

describe('login and logout', () => {
  test('login takes --token or --token-stdin, never both, and stores the CA as an absolute path', async () => {
    const home = await mkdtemp(path.join(dir, 'xdg-'));
    const relative = path.relative(process.cwd(), caPath);
    const config = login({ XDG_CONFIG_HOME: home }, ['login', '--gateway', 'https://gw.example.com', '--ca-cert', relative, '--token-stdin']);
    assert.deepEqual(config.token, { from: 'stdin' });
    assert.equal(config.admin, false);
    assert.equal(config.caCertPath, caPath);
    assert.equal(config.credentialsFile, path.join(home, 'slipway', 'credentials.json'));
    assert.deepEqual(login({ XDG_CONFIG_HOME: home, ...env }, ['login', '--admin', '--token', ' x ']).token, { from: 'flag', token: 'x' });
    invalid({ XDG_CONFIG_HOME: home, ...env }, ['login', '--token', 'x', '--token-stdin'], 'not both');
  });

  test('login without a token flag asks for it (on a terminal), never taking SLIPWAY_TOKEN as the token to store', async () => {
    const home = await mkdtemp(path.join(dir, 'xdg-'));
    assert.deepEqual(login({ XDG_CONFIG_HOME: home, ...env }, ['login']).token, { from: 'prompt' });
  });

  test('login needs a gateway and somewhere to store', () => {
    invalid({}, ['login', '--token', 'x'], 'SLIPWAY_GATEWAY (or --gateway) is required', 'neither XDG_CONFIG_HOME nor HOME');
  });

  test('logout takes --admin and nothing else', async () => {
    const command = loadConfig({ HOME: '/home/someone' }, ['logout', '--admin']);
    assert.deepEqual(command, { command: 'logout', admin: true, credentialsFile: '/home/someone/.config/slipway/credentials.json' });
    invalid({ HOME: '/home/someone' }, ['logout', '--gateway', 'https://x.example'], "unknown flag '--gateway' for slipway logout; expected one of --admin");
  });
});

describe('admin commands', () => {
  test('projects create, list and delete', () => {
    assert.deepEqual(admin(adminEnv, ['projects', 'create', 'web', '--isolate-untrusted']).request, { command: 'projects create', name: 'web', isolateUntrusted: true });
    assert.deepEqual(admin(adminEnv, ['projects', 'create', 'web']).request, { command: 'projects create', name: 'web', isolateUntrusted: false });
    const list = admin(adminEnv, ['projects', 'list', '--json']);
    assert.deepEqual(list.request, { command: 'projects list' });
    assert.equal(list.json, true);
    assert.deepEqual(admin(adminEnv, ['projects', 'delete', 'web']).request, { command: 'projects delete', name: 'web' });
    invalid(adminEnv, ['projects', 'create'], 'NAME is required (slipway projects create NAME)');
    invalid(adminEnv, ['projects', 'delete', 'a', 'b'], "unexpected argument 'b'");
    invalid(adminEnv, ['projects', 'delete', ''], 'NAME is empty');
  });

  test('tokens create, list and revoke', () => {
    assert.deepEqual(admin(adminEnv, ['tokens', 'create', 'web', '--scope', 'build', '--scope', 'read', '--ttl', '30d', '--description', 'CI for web']).request, {
      command: 'tokens create',
      project: 'web',
      scopes: ['build', 'read'],
      ttlSec: 30 * 86_400,
      description: 'CI for web',
    });
    assert.deepEqual(admin(adminEnv, ['tokens', 'create', 'web']).request, { command: 'tokens create', project: 'web', scopes: undefined, ttlSec: undefined, description: undefined });
    assert.deepEqual(admin(adminEnv, ['tokens', 'list', 'web']).request, { command: 'tokens list', project: 'web' });
    assert.deepEqual(admin(adminEnv, ['tokens', 'revoke', 'abc']).request, { command: 'tokens revoke', id: 'abc' });
    invalid(adminEnv, ['tokens', 'create', 'web', '--ttl', '30 days'], "--ttl must be a whole number with a unit s, m, h or d (e.g. 30d); got '30 days'");
    invalid(adminEnv, ['tokens', 'revoke'], 'ID is required');
  });

  test('trust add, list and remove', () => {
    const add = admin(adminEnv, [
      'trust', 'add', 'web',
      '--issuer', 'https://token.actions.githubusercontent.com',
      '--audience', 'slipway',
      '--condition', 'repository=acme/web',
      '--condition', 'ref=refs/heads/*',
      '--untrusted-when', 'event_name=pull_request',
      '--allow-any-subject',
      '--scope', 'build',
      '--token-ttl', '1h',
      '--id', 'gha-main',
    ]).request;
    assert.deepEqual(add, {
      command: 'trust add',
      project: 'web',
      policy: {
        issuer: 'https://token.actions.githubusercontent.com',
        audience: 'slipway',
        conditions: { repository: 'acme/web', ref: 'refs/heads/*' },
        untrustedWhen: { event_name: 'pull_request' },
        allowAnySubject: true,
        scopes: ['build'],
        tokenTtlSec: 3600,
        id: 'gha-main',
      },
    });
    // A pattern may itself hold '='; the claim is what comes before the first one.
    const withEquals = admin(adminEnv, ['trust', 'add', 'web', '--issuer', 'https://i.example', '--audience', 'a', '--condition', 'sub=a=b']).request;
    assert.deepEqual(withEquals.command === 'trust add' && withEquals.policy.conditions, { sub: 'a=b' });
    assert.deepEqual(admin(adminEnv, ['trust', 'list', 'web']).request, { command: 'trust list', project: 'web' });
    assert.deepEqual(admin(adminEnv, ['trust', 'remove', 'web', 'gha-main']).request, { command: 'trust remove', project: 'web', id: 'gha-main' });
    invalid(adminEnv, ['trust', 'add', 'web', '--condition', 'repository', '--condition', '=x', '--condition', 'a=1', '--condition', 'a=2'], '--issuer is required', '--audience is required', "got 'repository'", "got '=x'", "names claim 'a' twice");
    invalid(adminEnv, ['trust', 'remove', 'web'], 'ID is required (slipway trust remove PROJECT ID)');
  });

  test('an admin command needs an admin token, and a project token is not one', () => {
    invalid(env, ['projects', 'list'], 'no admin token: set SLIPWAY_ADMIN_TOKEN (or --admin-token), or run slipway login --admin');
    assert.equal(admin({ SLIPWAY_GATEWAY: 'https://gw.example.com' }, ['projects', 'list', '--admin-token', 'flag-admin']).token, 'flag-admin');
  });

  test('unknown commands, subcommands and flags are refused with what is expected', () => {
    invalid(adminEnv, ['project', 'list'], "unknown command 'project'", 'projects');
    invalid(adminEnv, ['projects', 'rename'], "unknown command 'slipway projects rename'; expected projects create, projects list, projects delete");
    invalid(adminEnv, ['tokens'], 'slipway tokens needs a subcommand: create, list, revoke');
    invalid(adminEnv, ['trust', 'list', 'web', '--json=yes'], 'flag --json takes no value');
    invalid(adminEnv, ['tokens', 'list', 'web', '--scope', 'build'], "unknown flag '--scope' for slipway tokens list");
  });
});

describe('help', () => {
  test('--help anywhere shows the command\'s help; nothing at all is a usage error', () => {
    const top = loadConfig({}, ['--help']);
    assert.ok(top.command === 'help' && top.ok && top.text.includes('projects create NAME'));
    const none = loadConfig({}, []);
    assert.ok(none.command === 'help' && !none.ok);
    const sub = loadConfig({}, ['tokens', 'create', '--help']);
    assert.ok(sub.command === 'help' && sub.ok && sub.text.includes('--ttl DURATION') && sub.text.includes('[SLIPWAY_ADMIN_TOKEN]'));
    const group = loadConfig({}, ['trust', '--help']);
    assert.ok(group.command === 'help' && group.text.includes('slipway trust remove PROJECT ID'));
  });
});

test('durations take a unit', () => {
  const problems: string[] = [];
  assert.equal(parseDuration('90s', '--ttl', problems), 90);
  assert.equal(parseDuration('15m', '--ttl', problems), 900);
  assert.equal(parseDuration('12h', '--ttl', problems), 43_200);
  assert.equal(parseDuration('30d', '--ttl', problems), 2_592_000);
  assert.deepEqual(problems, []);
  assert.equal(parseDuration('30', '--ttl', problems), undefined);
  assert.equal(parseDuration('-1d', '--ttl', problems), undefined);
  assert.equal(problems.length, 2);
});
