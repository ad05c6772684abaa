import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { accessSync, constants, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// A throwaway squid for tests: loopback only, no cache, CONNECT-only, everything in a temp dir.
//
// Gotchas this works around:
// - As root, squid drops to cache_effective_user after start-up and then writes its logs and runs
//   the auth helper as that user, so the temp dir and password file must belong to it.
// - Without visible_hostname squid can die at start-up when the machine has no FQDN.
// - The pinger helper needs setuid; it is turned off. So is netdb, which writes under /var.
// - shutdown_lifetime defaults to 30 s of waiting for clients on SIGTERM; set to 0.
// - `-N` keeps squid in the foreground so this process owns it; its helpers exit with it.
// - basic_ncsa_auth checks hashes through crypt(3) and its own MD5-crypt, so $apr1$, $1$ and
//   $6$ all work (plain DES crypt would silently ignore characters past the eighth).
// - squid cannot report a port it chose, so the port comes from a probe bind and start-up is
//   retried if another process takes it first.

const SQUID = '/usr/sbin/squid';
const NCSA_AUTH = '/usr/lib/squid/basic_ncsa_auth';
const STARTUP_DEADLINE_MS = 30_000;
const READY_LINE = 'Accepting HTTP Socket connections at';

export interface SquidOptions {
  // user name -> password; when given, every request must authenticate (Basic).
  readonly users?: Readonly<Record<string, string>>;
  // Squid ACL port spec for CONNECT targets, e.g. '1024-65535'.
  readonly connectPorts?: string;
}

export interface Squid {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  // http://[user:password@]127.0.0.1:port, with userinfo percent-encoded.
  url(user?: string, password?: string): string;
  accessLog(): Promise<string>;
  stop(): Promise<void>;
}

export function squidAvailable(): boolean {
  try {
    accessSync(SQUID, constants.X_OK);
    accessSync(NCSA_AUTH, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export async function startSquid(options: SquidOptions = {}): Promise<Squid> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-squid-'));
  try {
    const owner = effectiveUser();
    if (owner !== undefined) await chown(dir, owner.uid, owner.gid);
    const passwdFile = path.join(dir, 'passwd');
    if (options.users !== undefined) {
      const lines = Object.entries(options.users).map(([user, password]) => `${user}:${apr1Hash(password)}\n`);
      await writeFile(passwdFile, lines.join(''), { mode: 0o640 });
      if (owner !== undefined) await chown(passwdFile, owner.uid, owner.gid);
    }
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await probeFreePort();
      try {
        return await launch(dir, port, options, passwdFile, owner?.name);
      } catch (err) {
        lastError = err;
        if (!String((err as Error).message).includes('Address already in use')) break;
      }
    }
    throw lastError;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function launch(
  dir: string,
  port: number,
  options: SquidOptions,
  passwdFile: string,
  user: string | undefined,
): Promise<Squid> {
  const configFile = path.join(dir, `squid-${port}.conf`);
  const cacheLog = path.join(dir, `cache-${port}.log`);
  const accessLog = path.join(dir, `access-${port}.log`);
  const auth = options.users !== undefined;
  const config = [
    `http_port 127.0.0.1:${port}`,
    'visible_hostname slipway-test-proxy',
    user === undefined ? '' : `cache_effective_user ${user}`,
    `pid_filename ${path.join(dir, `squid-${port}.pid`)}`,
    `cache_log ${cacheLog}`,
    `access_log stdio:${accessLog}`,
    'cache_store_log none',
    'logfile_rotate 0',
    `coredump_dir ${dir}`,
    'netdb_filename none',
    'pinger_enable off',
    'cache deny all',
    'cache_mem 8 MB',
    'shutdown_lifetime 0 seconds',
    ...(auth
      ? [
          `auth_param basic program ${NCSA_AUTH} ${passwdFile}`,
          'auth_param basic children 2 startup=1 idle=1',
          'auth_param basic realm slipway-test',
          'acl authenticated proxy_auth REQUIRED',
        ]
      : []),
    'acl CONNECT method CONNECT',
    `acl tunnel_ports port ${options.connectPorts ?? '1024-65535'}`,
    'http_access deny !CONNECT',
    'http_access deny CONNECT !tunnel_ports',
    auth ? 'http_access allow authenticated' : 'http_access allow CONNECT',
    'http_access deny all',
    '',
  ].join('\n');
  await writeFile(configFile, config);

  const child = spawn(SQUID, ['-N', '-f', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
  let dead = false;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      output += `\n${err.message}`;
      resolve();
    });
  }).then(() => {
    dead = true;
  });

  const deadline = Date.now() + STARTUP_DEADLINE_MS;
  for (;;) {
    const log = await readFile(cacheLog, 'utf8').catch(() => '');
    if (log.includes(READY_LINE)) break;
    if (dead || Date.now() > deadline) {
      await stopChild(child, exited);
      throw new Error(`squid did not start on 127.0.0.1:${port}:\n${output}\n${log}`);
    }
    await sleep(50);
  }

  let stopped: Promise<void> | undefined;
  return {
    host: '127.0.0.1',
    port,
    dir,
    url(userName?: string, password?: string) {
      const userinfo =
        userName === undefined ? '' : `${encodeURIComponent(userName)}:${encodeURIComponent(password ?? '')}@`;
      return `http://${userinfo}127.0.0.1:${port}`;
    },
    accessLog: () => readFile(accessLog, 'utf8').catch(() => ''),
    stop() {
      stopped ??= stopChild(child, exited).then(() => rm(dir, { recursive: true, force: true }));
      return stopped;
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

async function probeFreePort(): Promise<number> {
  const server = net.createServer();
  server.on('error', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

// squid as root must run as someone else; Debian's package creates `proxy` for it.
function effectiveUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const name of ['proxy', 'nobody']) {
    const fields = passwd.find((line) => line.startsWith(`${name}:`))?.split(':');
    if (fields !== undefined) return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error('running as root, but neither a "proxy" nor a "nobody" user exists for squid to switch to');
}

function apr1Hash(password: string): string {
  const result = spawnSync('openssl', ['passwd', '-apr1', '-stdin'], { input: password, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl passwd failed: ${result.stderr || result.error?.message}`);
  return result.stdout.trim();
}
