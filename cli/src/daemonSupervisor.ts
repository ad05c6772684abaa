// The proxy daemon's long-lived half (`slipway daemon run`). It owns the per-platform sockets
// that buildx's nodes point at and hands every accepted connection, untouched, to a worker
// process (`slipway daemon worker`) that carries it to the gateway. When the worker dies it is
// started again, and connections that arrive meanwhile wait here, so a crash costs the builds
// that were running and nothing more: the sockets never stop accepting.
//
// The supervisor does no networking of its own and keeps nothing but the queue, so there is
// little in it that can fail; what can (TLS, HTTP/2, the gateway's answers) is the worker's.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Env, Logger, Platform } from '@slipway/proto';
import { CliError, exitCodeOf } from './cliError.js';
import type { DaemonPaths } from './dockerLocations.js';

/** Written to the state file; read by daemonControl. */
export interface DaemonState {
  supervisorPid: number;
  workerPid: number | undefined;
  /** The current worker has said it is ready. */
  ready: boolean;
  startedAt: string;
  workerStarts: number;
  gateway: string;
  sockets: Partial<Record<Platform, string>>;
  /** Set when the supervisor gave up (the worker cannot run with this configuration). */
  stoppedBecause?: string;
}

/** From worker to supervisor: ready for connections; or it has its copy of connection `id`. */
export type WorkerMessage = { type: 'ready' } | { type: 'adopted'; id: number };
/** From supervisor to worker, with the accepted socket as the handle. */
export type ConnectionMessage = { type: 'connection'; platform: Platform; id: number };

export interface DaemonSupervisorOptions {
  paths: DaemonPaths;
  platforms: readonly Platform[];
  gateway: string;
  /** Runs one worker: `node slipway.mjs daemon worker ...`. */
  worker: { file: string; args: string[] };
  env: Env;
  log: Logger;
  /** Connections held while no worker is ready; beyond this, new ones are refused. */
  maxQueued?: number;
}

const RESTART_BASE_MS = 250;
const RESTART_MAX_MS = 10_000;
// A worker that lived this long was healthy: the next crash restarts quickly again.
const HEALTHY_AFTER_MS = 30_000;
const STOP_GRACE_MS = 10_000;

export class DaemonSupervisor {
  private readonly servers: net.Server[] = [];
  private readonly queue: Array<{ platform: Platform; socket: net.Socket }> = [];
  // Sent to a worker that has not yet said it holds them. The supervisor keeps its own copy of
  // each (keepOpen) until then: a worker that dies first never read a byte of them, so they go
  // to the next one. (Without keepOpen, Node would hold the only copy until the worker's
  // acknowledgement, which a dead worker never sends: the connection would hang forever.)
  private readonly inFlight = new Map<number, { platform: Platform; socket: net.Socket; worker: ChildProcess }>();
  private nextId = 0;
  private worker: ChildProcess | undefined;
  private ready = false;
  private workerStarts = 0;
  private failuresInARow = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly startedAt = new Date().toISOString();
  private resolveDone!: (code: number) => void;
  /** Resolves with the exit code once the supervisor has stopped (asked to, or giving up). */
  readonly done = new Promise<number>((resolve) => {
    this.resolveDone = resolve;
  });

  constructor(private readonly options: DaemonSupervisorOptions) {}

  async start(): Promise<void> {
    const { paths } = this.options;
    fs.mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(paths.dir, 0o700);
    for (const platform of this.options.platforms) {
      const file = paths.sockets[platform];
      await removeStaleSocket(file);
      const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => this.accepted(platform, socket));
      server.on('error', (err) => this.options.log.error('daemon socket failed', { socket: file, reason: err.message }));
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(new CliError('CONFIG_INVALID', `cannot listen on unix://${file}: ${err.message}`, { cause: err })));
        server.listen(file, () => resolve());
      });
      // Whoever can connect can build with this user's token: the user alone.
      fs.chmodSync(file, 0o600);
      this.servers.push(server);
    }
    this.spawnWorker();
    this.writeState();
  }

  /** Stops accepting, stops the worker (which finishes its builds) and removes the sockets and state. */
  async stop(code = 0): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.restartTimer);
    // Not waited for: close() completes only once every connection ever handed to a worker has
    // ended, and the worker is about to end them.
    for (const server of this.servers) server.close();
    for (const { socket } of this.queue.splice(0)) socket.destroy();
    const worker = this.worker;
    if (worker && worker.exitCode === null && worker.signalCode === null) {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.kill('SIGTERM');
      const kill = setTimeout(() => worker.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(kill);
    }
    for (const platform of this.options.platforms) fs.rmSync(this.options.paths.sockets[platform], { force: true });
    if (code === 0) fs.rmSync(this.options.paths.stateFile, { force: true });
    this.resolveDone(code);
  }

  private accepted(platform: Platform, socket: net.Socket): void {
    socket.on('error', () => {});
    if (this.ready && this.worker?.connected) {
      this.handOver(platform, socket);
      return;
    }
    if (this.queue.length >= (this.options.maxQueued ?? 256)) {
      this.options.log.warn('too many connections waiting for the worker; refusing one', { platform });
      socket.destroy();
      return;
    }
    this.queue.push({ platform, socket });
  }

  private handOver(platform: Platform, socket: net.Socket): void {
    const worker = this.worker!;
    const id = ++this.nextId;
    this.inFlight.set(id, { platform, socket, worker });
    const message: ConnectionMessage = { type: 'connection', platform, id };
    worker.send(message, socket, { keepOpen: true }, (err) => {
      if (!err) return;
      this.options.log.debug('could not hand a connection to the worker; it waits for the next one', { platform, reason: err.message });
      if (this.inFlight.delete(id)) this.queue.unshift({ platform, socket });
    });
  }

  private adopted(id: number): void {
    const entry = this.inFlight.get(id);
    if (entry === undefined) return;
    this.inFlight.delete(id);
    // Only this process's descriptor: the worker's copy keeps the connection open.
    entry.socket.destroy();
  }

  private spawnWorker(): void {
    if (this.stopping) return;
    this.workerStarts++;
    this.ready = false;
    const startedAt = Date.now();
    const worker = spawn(this.options.worker.file, this.options.worker.args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: this.options.env });
    this.worker = worker;
    worker.on('error', (err) => this.options.log.error('cannot start the daemon worker', { reason: err.message }));
    worker.on('message', (message: WorkerMessage) => {
      if (message?.type === 'adopted') {
        this.adopted(message.id);
        return;
      }
      if (message?.type !== 'ready' || this.worker !== worker) return;
      this.ready = true;
      this.options.log.info('daemon worker ready', { pid: worker.pid ?? 0 });
      for (const { platform, socket } of this.queue.splice(0)) this.handOver(platform, socket);
      this.writeState();
    });
    worker.once('exit', (code, signal) => {
      if (this.worker === worker) {
        this.worker = undefined;
        this.ready = false;
      }
      for (const [id, entry] of this.inFlight) {
        if (entry.worker !== worker) continue;
        this.inFlight.delete(id);
        if (this.stopping) entry.socket.destroy();
        else this.queue.unshift({ platform: entry.platform, socket: entry.socket });
      }
      if (this.stopping) return;
      // A worker that cannot run with this configuration will not run better the next time.
      if (code === exitCodeOf('CONFIG_INVALID')) {
        this.options.log.error('the daemon worker refused its configuration; stopping', { code });
        this.writeState('the worker refused its configuration (see the log)');
        void this.stop(code);
        return;
      }
      this.failuresInARow = Date.now() - startedAt >= HEALTHY_AFTER_MS ? 1 : this.failuresInARow + 1;
      const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** (this.failuresInARow - 1));
      this.options.log.warn('daemon worker exited; starting another', { code: code ?? -1, signal: signal ?? '', restartInMs: delay });
      this.writeState();
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        this.spawnWorker();
        this.writeState();
      }, delay);
    });
  }

  private writeState(stoppedBecause?: string): void {
    const state: DaemonState = {
      supervisorPid: process.pid,
      workerPid: this.worker?.pid,
      ready: this.ready,
      startedAt: this.startedAt,
      workerStarts: this.workerStarts,
      gateway: this.options.gateway,
      sockets: Object.fromEntries(this.options.platforms.map((p) => [p, this.options.paths.sockets[p]])),
      ...(stoppedBecause ? { stoppedBecause } : {}),
    };
    const file = this.options.paths.stateFile;
    const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      fs.writeFileSync(temp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
      fs.renameSync(temp, file);
    } catch (err) {
      fs.rmSync(temp, { force: true });
      this.options.log.warn('cannot write the daemon state', { file, reason: (err as Error).message });
    }
  }
}

// A socket file left by a daemon that died would make listen() fail; one that a live process
// still serves is not ours to take.
async function removeStaleSocket(file: string): Promise<void> {
  if (!fs.existsSync(file)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(file);
    probe.on('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
  if (alive) throw new CliError('CONFIG_INVALID', `unix://${file} is already served by another process (another slipway daemon?); stop it with slipway daemon stop`);
  fs.rmSync(file, { force: true });
}
