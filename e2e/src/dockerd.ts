// A private Docker daemon for one test: its own data-root, exec-root, socket, config and log, so
// it never touches the machine's /var/lib/docker or /etc/docker/daemon.json. Needs root.
import { constants as fsConstants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { DEBIAN13_ROOT } from './buildx.js';
import { HarnessError } from './harnessError.js';
import { mountsUnder, runCommand, spawnManaged, tempDir, type ExitStatus } from './processes.js';

export type DockerdFlavor = '20.10' | '26';

export interface DockerdOptions {
  /** '20.10': Debian 12's dockerd (embedded BuildKit, old exporters). '26': Debian 13's, with the containerd image store. */
  flavor: DockerdFlavor;
  /** Only one dockerd can own docker0 at a time; 'none' gives it up (RUN steps then need --network host). */
  bridge?: 'default' | 'none';
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
}

export interface Dockerd {
  readonly flavor: DockerdFlavor;
  readonly socketPath: string;
  /** `unix://<socketPath>`: for DOCKER_HOST, `docker -H` and gRPC targets. */
  readonly host: string;
  readonly dir: string;
  readonly logPath: string;
  /** The last few KiB of the daemon's log. */
  logTail(): Promise<string>;
  /** Idempotent: SIGTERM, SIGKILL after the grace, then unmounts and removes the temp dir. */
  stop(): Promise<void>;
}

export const DOCKERD_BINARIES: Record<DockerdFlavor, string> = {
  '20.10': '/usr/sbin/dockerd',
  '26': `${DEBIAN13_ROOT}/usr/sbin/dockerd`,
};
const DEFAULT_START_TIMEOUT_MS = 60_000;
const DEFAULT_STOP_GRACE_MS = 20_000;
const PING_INTERVAL_MS = 100;
const PING_REQUEST_TIMEOUT_MS = 2_000;
const LOG_TAIL_BYTES = 8 * 1024;

export async function startDockerd(options: DockerdOptions): Promise<Dockerd> {
  const { flavor, bridge = 'default' } = options;
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const stopGraceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  const binary = DOCKERD_BINARIES[flavor];
  if (binary === undefined) throw new HarnessError('INVALID_ARGUMENT', `dockerd flavor must be '20.10' or '26'; got ${JSON.stringify(flavor)}`);
  if (bridge !== 'default' && bridge !== 'none') throw new HarnessError('INVALID_ARGUMENT', `dockerd bridge must be 'default' or 'none'; got ${JSON.stringify(bridge)}`);
  const uid = process.getuid?.();
  if (uid !== 0) throw new HarnessError('NOT_AVAILABLE', `starting dockerd needs root; this process runs as uid ${uid ?? 'unknown'}`);
  try {
    await fs.access(binary, fsConstants.X_OK);
  } catch (err) {
    const how = flavor === '26' ? `Debian 13's docker.io unpacked under ${DEBIAN13_ROOT}` : `Debian 12's docker.io`;
    throw new HarnessError('NOT_AVAILABLE', `dockerd ${flavor} expected at ${binary} (${how}; run scripts/install-deps.sh as root), but it is not there or not executable`, {
      cause: err,
    });
  }

  // The exec-root holds containerd's unix sockets and sun_path is 108 bytes: keep paths short.
  const scratch = await tempDir('dockerd');
  const dir = scratch.path;
  const socketPath = path.join(dir, 'docker.sock');
  const logPath = path.join(dir, 'log');
  const configPath = path.join(dir, 'daemon.json');
  const id = path.basename(dir).replace(/[^A-Za-z0-9]/g, '');
  await fs.writeFile(configPath, JSON.stringify(flavor === '26' ? { features: { 'containerd-snapshotter': true } } : {}));

  const args = [
    '--host', `unix://${socketPath}`,
    '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'x'),
    '--pidfile', path.join(dir, 'pid'),
    '--config-file', configPath,
    '--iptables=false',
    // Only matters if a shared system containerd is running: keeps each daemon's objects apart.
    '--containerd-namespace', `sw${id}`,
    '--containerd-plugins-namespace', `sw${id}plugins`,
  ];
  if (bridge === 'none') args.push('--bridge=none');
  const env: NodeJS.ProcessEnv = { ...process.env, SLIPWAY_DOCKERD_LOG: logPath };
  if (flavor === '26') {
    // Its helpers (docker-proxy, docker-init) sit beside it; containerd and runc come from Debian 12.
    env.PATH = [`${DEBIAN13_ROOT}/usr/sbin`, `${DEBIAN13_ROOT}/usr/bin`, `${DEBIAN13_ROOT}/usr/libexec/docker`, env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':');
  }

  // The shell only redirects and then becomes dockerd (same pid, same process group), so the
  // managed process's signals and exit cleanup reach the daemon while its log goes to a file.
  const proc = spawnManaged('/bin/sh', ['-c', 'exec "$0" "$@" >>"$SLIPWAY_DOCKERD_LOG" 2>&1', binary, ...args], { name: `dockerd-${flavor}`, env });

  const logTail = (): Promise<string> => readTail(logPath);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await proc.stop('SIGTERM', stopGraceMs);
      // A daemon that had to be killed leaves overlay, netns and shm mounts behind.
      for (const point of mountsUnder(dir).sort((a, b) => b.length - a.length)) {
        await runCommand('umount', ['--lazy', point], { allowFailure: true, timeoutMs: 10_000 });
      }
      await scratch.remove();
    })();
    return stopping;
  };

  try {
    await waitUntilReady(socketPath, startTimeoutMs, proc.exited);
  } catch (err) {
    const tail = await logTail();
    await stop().catch(() => undefined);
    if (!(err instanceof HarnessError)) throw err;
    throw new HarnessError(err.code, `${err.message}\n--- end of the log of dockerd ${flavor} (${binary}) ---\n${tail}`, { cause: err.cause });
  }
  return { flavor, socketPath, host: `unix://${socketPath}`, dir, logPath, logTail, stop };
}

async function waitUntilReady(socketPath: string, timeoutMs: number, exited: Promise<ExitStatus>): Promise<void> {
  let exitStatus: ExitStatus | undefined;
  void exited.then((status) => {
    exitStatus = status;
  });
  const startedAt = Date.now();
  let last = 'no answer yet';
  for (;;) {
    const problem = await ping(socketPath);
    if (problem === undefined) return;
    last = problem;
    if (exitStatus !== undefined) {
      if (exitStatus.error) throw new HarnessError('SPAWN_FAILED', `could not start dockerd: ${exitStatus.error.message}`, { cause: exitStatus.error });
      const how = exitStatus.signal ? `signal ${exitStatus.signal}` : `code ${exitStatus.code}`;
      throw new HarnessError('PROCESS_EXITED', `dockerd exited with ${how} before answering GET /_ping on ${socketPath}`);
    }
    if (Date.now() - startedAt >= timeoutMs) {
      throw new HarnessError('TIMEOUT', `dockerd did not answer GET /_ping with 200 OK on ${socketPath} within ${timeoutMs} ms (last: ${last})`);
    }
    await new Promise((resolve) => setTimeout(resolve, PING_INTERVAL_MS));
  }
}

/** Resolves undefined when the daemon answers 200 "OK", otherwise what happened instead. */
function ping(socketPath: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath, path: '/_ping', method: 'GET', agent: false, timeout: PING_REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (err) => resolve(err.message));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve(res.statusCode === 200 && body === 'OK' ? undefined : `HTTP ${res.statusCode} ${JSON.stringify(body.slice(0, 200))}`);
      });
    });
    req.on('error', (err) => resolve(err.message));
    req.on('timeout', () => req.destroy(new Error(`no answer within ${PING_REQUEST_TIMEOUT_MS} ms`)));
    req.end();
  });
}

async function readTail(file: string): Promise<string> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(file, 'r');
    const { size } = await handle.stat();
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } catch (err) {
    return `(log unavailable: ${err instanceof Error ? err.message : String(err)})`;
  } finally {
    await handle?.close();
  }
}
