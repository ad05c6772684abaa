// `slipway doctor`, the real program, against a gateway whose amd64 builder is a real dockerd's
// BuildKit: all is well, then one fault at a time (no token, the wrong CA, the proxy down, the
// gateway down, no arm64 builder), each reported by its own check with its own words and fix,
// and a non-zero exit code that is that check's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { SLIPWAY_BIN, buildxUnavailableReason, prepareBuildx, runCommand, startDockerd, startStack, tempDir, type Dockerd, type SlipwayStack, type TempDir } from '@slipway/e2e';

interface Check {
  id: string;
  title: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  summary: string;
  fix?: string;
  code?: string;
  data?: Record<string, unknown>;
}

let stack: SlipwayStack;
let dockerd: Dockerd;
let scratch: TempDir;
let dockerConfig: string;

before(async () => {
  scratch = await tempDir('doctor');
  // A Docker configuration of the test's own (with buildx where it is installed), never the machine's.
  dockerConfig = buildxUnavailableReason() === null ? (await prepareBuildx(path.join(scratch.path, 'buildx'))).dockerConfig : path.join(scratch.path, 'docker-config');
  dockerd = await startDockerd({ flavor: '20.10' });
  stack = await startStack();
  await stack.startAgent({ agentId: 'doctor-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
});

after(async () => {
  if (scratch) await runCommand(process.execPath, [SLIPWAY_BIN, 'configure-docker', '--uninstall'], { env: { XDG_CONFIG_HOME: path.join(scratch.path, 'xdg'), DOCKER_CONFIG: dockerConfig, HOME: scratch.path }, allowFailure: true });
  await stack?.close();
  await dockerd?.stop();
  await scratch?.remove();
});

async function doctor(env: Record<string, string | undefined>, args: string[] = []): Promise<{ code: number | null; checks: Check[]; stdout: string }> {
  const base: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: scratch.path,
    XDG_CONFIG_HOME: path.join(scratch.path, 'xdg'),
    DOCKER_CONFIG: dockerConfig,
    SLIPWAY_GATEWAY: stack.gatewayUrl,
    SLIPWAY_TOKEN: await stack.clientToken('demo'),
    SLIPWAY_CA_CERT: stack.caPath,
    SLIPWAY_ACQUIRE_TIMEOUT_MS: '10000',
  };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  const json = await runCommand(process.execPath, [SLIPWAY_BIN, 'doctor', '--json', ...args], { env: base, allowFailure: true, timeoutMs: 120_000 });
  const human = await runCommand(process.execPath, [SLIPWAY_BIN, 'doctor', ...args], { env: base, allowFailure: true, timeoutMs: 120_000 });
  assert.equal(human.code, json.code, 'the same exit code with and without --json');
  const report = JSON.parse(json.stdout) as { ok: boolean; checks: Check[] };
  assert.equal(report.ok, json.code === 0);
  return { code: json.code, checks: report.checks, stdout: human.stdout };
}

function check(checks: Check[], id: string): Check {
  const found = checks.find((c) => c.id === id);
  assert.ok(found, `a check ${id} among ${checks.map((c) => c.id).join(', ')}`);
  return found;
}

const ORDER = ['config', 'dns', 'proxy', 'tcp', 'tls', 'http2', 'websocket', 'auth', 'builder:linux/amd64'];

test('all well: every check passes in order, the TLS issuer is shown, and the builder answered ListWorkers', async () => {
  const { code, checks, stdout } = await doctor({}, ['--platform', 'linux/amd64']);
  assert.equal(code, 0, stdout);
  assert.deepEqual(checks.map((c) => c.id), [...ORDER, 'docker']);
  for (const c of checks.slice(0, ORDER.length)) assert.equal(c.status, 'ok', `${c.id}: ${c.summary}`);
  // Docker not set up is worth saying, not a failure: slipway proxy works without it.
  const docker = check(checks, 'docker');
  assert.equal(docker.status, 'warn');
  assert.match(docker.fix ?? '', /slipway configure-docker/);
  assert.match(check(checks, 'tls').summary, /issued by 'Slipway development CA/);
  assert.match(check(checks, 'builder:linux/amd64').summary, /builder doctor-amd64 answered ListWorkers through a HTTP\/2 tunnel: \d+ worker\(s\) for [^ ]*linux\/amd64/);
  assert.match(stdout, /^✔ Configuration/m);
  assert.match(stdout, /All checks passed \(1 warning\(s\)\)\./);
});

test("after configure-docker: the setup is as written and the daemon's socket answers ListWorkers; with the daemon down, exit 19 and how to start it", async () => {
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: scratch.path, XDG_CONFIG_HOME: path.join(scratch.path, 'xdg'), DOCKER_CONFIG: dockerConfig, SLIPWAY_GATEWAY: stack.gatewayUrl, SLIPWAY_TOKEN: await stack.clientToken('demo'), SLIPWAY_CA_CERT: stack.caPath };
  const configured = await runCommand(process.execPath, [SLIPWAY_BIN, 'configure-docker'], { env, allowFailure: true, timeoutMs: 120_000 });
  assert.equal(configured.code, 0, configured.stderr);

  const healthy = await doctor({}, ['--platform', 'linux/amd64']);
  assert.equal(healthy.code, 0, healthy.stdout);
  assert.deepEqual(healthy.checks.map((c) => c.id), [...ORDER, 'docker', 'daemon']);
  const docker = check(healthy.checks, 'docker');
  assert.notEqual(docker.status, 'fail', docker.summary);
  const daemon = check(healthy.checks, 'daemon');
  assert.equal(daemon.status, 'ok', daemon.summary);
  assert.match(healthy.stdout, /linux\/amd64: ListWorkers through unix:\/\/.*linux-amd64\.sock answered/);

  const stopped = await runCommand(process.execPath, [SLIPWAY_BIN, 'daemon', 'stop'], { env, allowFailure: true });
  assert.equal(stopped.code, 0, stopped.stderr);
  const down = await doctor({}, ['--platform', 'linux/amd64']);
  assert.equal(down.code, 19, down.stdout);
  const daemonDown = check(down.checks, 'daemon');
  assert.equal(daemonDown.status, 'fail');
  assert.match(daemonDown.summary, /the Slipway daemon is not running/);
  assert.match(daemonDown.fix ?? '', /slipway daemon start/);
  const removed = await runCommand(process.execPath, [SLIPWAY_BIN, 'configure-docker', '--uninstall'], { env, allowFailure: true });
  assert.equal(removed.code, 0, removed.stderr);
});

test('no token: the configuration check fails with how to get one (exit 2); the network is still checked', async () => {
  const { code, checks, stdout } = await doctor({ SLIPWAY_TOKEN: undefined });
  assert.equal(code, 2, stdout);
  const config = check(checks, 'config');
  assert.equal(config.status, 'fail');
  assert.match(config.summary, /no project token/);
  assert.match(config.fix ?? '', /slipway login/);
  assert.equal(check(checks, 'tls').status, 'ok', 'TLS needs no token');
  assert.equal(check(checks, 'auth').status, 'skip');
  assert.match(stdout, /✘ \[ERROR\] Configuration: no project token/);
});

test("the wrong CA: TLS fails naming the certificate's issuer (exit 8)", async () => {
  const wrongCa = path.join(scratch.path, 'unrelated-ca.pem');
  await fs.writeFile(wrongCa, stack.pki.unrelatedCa.certPem);
  const { code, checks, stdout } = await doctor({ SLIPWAY_CA_CERT: wrongCa });
  assert.equal(code, 8, stdout);
  const tls = check(checks, 'tls');
  assert.equal(tls.status, 'fail');
  assert.match(tls.summary, /issued by 'Slipway development CA[^']*' \(Slipway development\), which is not trusted/);
  assert.match(tls.fix ?? '', /SLIPWAY_CA_CERT/);
  assert.equal(check(checks, 'tcp').status, 'ok');
  assert.equal(check(checks, 'builder:linux/amd64').status, 'skip');
});

test('the proxy down: TCP fails naming the proxy, not the gateway (exit 5)', async () => {
  const closed = await closedPort();
  const { code, checks, stdout } = await doctor({ HTTPS_PROXY: `http://user:secret@127.0.0.1:${closed}` });
  assert.equal(code, 5, stdout);
  assert.equal(check(checks, 'proxy').summary, `through proxy 127.0.0.1:${closed} (from HTTPS_PROXY), sending Basic credentials from the URL`);
  const tcp = check(checks, 'tcp');
  assert.equal(tcp.status, 'fail');
  assert.match(tcp.summary, new RegExp(`could not connect to proxy 127\\.0\\.0\\.1:${closed}`));
  assert.match(tcp.fix ?? '', /proxy/);
  assert.doesNotMatch(stdout, /secret/);
});

test('the gateway down: TCP fails naming the gateway (exit 7)', async () => {
  const closed = await closedPort();
  const { code, checks, stdout } = await doctor({ SLIPWAY_GATEWAY: `https://127.0.0.1:${closed}` });
  assert.equal(code, 7, stdout);
  const tcp = check(checks, 'tcp');
  assert.equal(tcp.status, 'fail');
  assert.match(tcp.summary, new RegExp(`could not connect to gateway 127\\.0\\.0\\.1:${closed}`));
  assert.match(tcp.fix ?? '', /gateway is running/);
  for (const id of ['tls', 'http2', 'websocket', 'auth']) assert.equal(check(checks, id).status, 'skip');
});

test('no arm64 builder: its check fails with NO_AGENT and how to add one, the amd64 one passes (exit 12)', async () => {
  const { code, checks, stdout } = await doctor({});
  assert.equal(code, 12, stdout);
  assert.equal(check(checks, 'builder:linux/amd64').status, 'ok');
  const arm = check(checks, 'builder:linux/arm64');
  assert.equal(arm.status, 'fail');
  assert.equal(arm.code, 'NO_AGENT');
  assert.match(arm.summary, /linux\/arm64/);
  assert.match(arm.fix ?? '', /start an agent with --platform linux\/arm64/);
  assert.match(stdout, /✘ \[ERROR\] Builder linux\/arm64/);
});

async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}
