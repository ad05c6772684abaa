// Child processes and scratch folders for end-to-end tests.
//
// Every child the harness starts is remembered until it exits, and killed when the test process
// exits or is signalled, so a failing or interrupted test file leaves no dockerd or redis behind.
// Children run in their own process group by default: a dockerd's containerd dies with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { HarnessError } from './harnessError.js';

// The one switch the harness reads; it only changes what is printed.
const VERBOSE = process.env.SLIPWAY_TEST_VERBOSE === '1';

const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;
const DEFAULT_WAIT_FOR_OUTPUT_MS = 30_000;
const DEFAULT_STOP_GRACE_MS = 10_000;
// After SIGKILL a process can still take a moment to be reaped; past this something is badly wrong.
const KILL_REAP_LIMIT_MS = 10_000;
// stdout/stderr data can arrive after 'exit'; give the pipes this long to drain before telling
// waiters that the process is gone. A grandchild holding the pipe open must not block forever.
const EXIT_DRAIN_MS = 200;
const ERROR_TAIL_BYTES = 16 * 1024;

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the program could not be started at all. */
  error?: Error;
}

// ---------------------------------------------------------------------------------------------
// Cleanup on exit

interface Killable {
  pid: number;
  group: boolean;
}

const liveChildren = new Set<Killable>();
const liveTempDirs = new Set<string>();
let exitHooksInstalled = false;

function signalChild(k: Killable, signal: NodeJS.Signals): void {
  try {
    process.kill(k.group ? -k.pid : k.pid, signal);
  } catch (err) {
    // ESRCH: already gone. Anything else (EPERM) is not ours to fix during cleanup.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

function cleanupNow(): void {
  for (const k of liveChildren) {
    try {
      signalChild(k, 'SIGKILL');
    } catch {
      // best effort while exiting
    }
  }
  liveChildren.clear();
  for (const dir of liveTempDirs) {
    // Children were just SIGKILLed; a dockerd's mounts may outlive it. Never delete through a mount.
    if (mountsUnder(dir).length === 0) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort while exiting
      }
    } else {
      process.stderr.write(`[e2e harness] leaving ${dir}: it still has mounts under it\n`);
    }
  }
  liveTempDirs.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', cleanupNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupNow();
      process.exit(128 + (os.constants.signals[sig] ?? 0));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Bounded output capture

class OutputRing {
  private readonly lines: string[] = [];
  private bytes = 0;
  private droppedBytes = 0;

  constructor(private readonly maxBytes: number) {}

  push(line: string): void {
    const kept = line.length > this.maxBytes ? line.slice(line.length - this.maxBytes) : line;
    this.droppedBytes += line.length - kept.length;
    this.lines.push(kept);
    this.bytes += kept.length + 1;
    while (this.bytes > this.maxBytes && this.lines.length > 1) {
      const dropped = this.lines.shift() ?? '';
      this.bytes -= dropped.length + 1;
      this.droppedBytes += dropped.length + 1;
    }
  }

  snapshot(): readonly string[] {
    return this.lines;
  }

  text(): string {
    const prefix = this.droppedBytes > 0 ? `[... ${this.droppedBytes} earlier characters dropped ...]\n` : '';
    return prefix + this.lines.join('\n');
  }
}

function withoutStatefulFlags(re: RegExp): RegExp {
  return re.global || re.sticky ? new RegExp(re.source, re.flags.replace(/[gy]/g, '')) : re;
}

function tail(text: string, max = ERROR_TAIL_BYTES): string {
  return text.length <= max ? text : `[... ${text.length - max} characters cut ...]\n${text.slice(-max)}`;
}

// ---------------------------------------------------------------------------------------------
// Long-running processes

export interface SpawnManagedOptions {
  cwd?: string;
  /** Full environment of the child; defaults to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Shown in messages and verbose output; defaults to the program's base name. */
  name?: string;
  /** Bound of the captured output (stdout and stderr interleaved by line); the oldest lines go first. */
  maxOutputBytes?: number;
  /** Run the child in its own process group and signal the whole group (default true). */
  processGroup?: boolean;
  /** 'pipe' gives the caller `child.stdin`; default 'ignore'. */
  stdin?: 'ignore' | 'pipe';
}

interface OutputWaiter {
  re: RegExp;
  resolve: (m: RegExpExecArray) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves once the process has exited (or failed to start); never rejects. */
  readonly exited: Promise<ExitStatus>;

  private readonly ring: OutputRing;
  private readonly partial = { stdout: '', stderr: '' };
  private readonly waiters = new Set<OutputWaiter>();
  private readonly killable: Killable | null;
  private status: ExitStatus | null = null;
  private gone = false; // exited and its output drained: waiters can no longer be satisfied
  private stopping: Promise<ExitStatus> | null = null;
  private drainTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    opts: SpawnManagedOptions = {},
  ) {
    installExitHooks();
    this.name = opts.name ?? path.basename(command);
    this.ring = new OutputRing(opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES);
    const group = opts.processGroup ?? true;
    this.child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: group,
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    });
    this.killable = this.child.pid === undefined ? null : { pid: this.child.pid, group };
    if (this.killable) liveChildren.add(this.killable);

    for (const stream of ['stdout', 'stderr'] as const) {
      const s = this.child[stream];
      if (!s) continue;
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => this.onData(stream, chunk));
      s.on('end', () => this.flushPartial(stream));
      s.on('error', () => {
        // A pipe error only loses output; the exit status still arrives through 'exit'.
      });
    }
    if (this.child.stdin) {
      this.child.stdin.on('error', () => {
        // EPIPE when the child exits before reading what a test wrote; the exit status says why.
      });
    }

    this.exited = new Promise<ExitStatus>((resolve) => {
      this.child.once('error', (err) => {
        // 'error' without a pid means spawn failed; with a pid it is a failed kill(), not an exit.
        if (this.child.pid !== undefined || this.status) return;
        this.status = { code: null, signal: null, error: err };
        this.markGone();
        resolve(this.status);
      });
      this.child.once('exit', (code, signal) => {
        this.status = { code, signal };
        if (this.killable) liveChildren.delete(this.killable);
        this.drainTimer = setTimeout(() => this.markGone(), EXIT_DRAIN_MS);
        resolve(this.status);
      });
      this.child.once('close', () => this.markGone());
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The exit status, or null while the process runs. */
  get exitStatus(): ExitStatus | null {
    return this.status;
  }

  /** Captured output (bounded tail), stdout and stderr interleaved by line. */
  output(): string {
    const rest = [this.partial.stdout, this.partial.stderr].filter((p) => p.length > 0);
    const text = this.ring.text();
    return rest.length === 0 ? text : [text, ...rest].filter((p) => p.length > 0).join('\n');
  }

  /**
   * Resolves with the first match of `re` against one line of output (already captured output
   * counts). Rejects with TIMEOUT, or PROCESS_EXITED / SPAWN_FAILED when it can no longer appear.
   */
  waitForOutput(re: RegExp, timeoutMs = DEFAULT_WAIT_FOR_OUTPUT_MS): Promise<RegExpExecArray> {
    const pattern = withoutStatefulFlags(re);
    for (const line of [...this.ring.snapshot(), this.partial.stdout, this.partial.stderr]) {
      const m = pattern.exec(line);
      if (m) return Promise.resolve(m);
    }
    if (this.gone) return Promise.reject(this.goneError(`waiting for output matching ${pattern}`));
    return new Promise<RegExpExecArray>((resolve, reject) => {
      const waiter: OutputWaiter = {
        re: pattern,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(
            new HarnessError(
              'TIMEOUT',
              `${this.name}: expected output matching ${pattern} within ${timeoutMs} ms, it did not appear.\n` +
                `--- output of ${this.name} ---\n${tail(this.output())}`,
            ),
          );
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /**
   * Sends `signal` (to the whole group by default), waits up to `graceMs`, then SIGKILLs.
   * Idempotent; resolves with the exit status.
   */
  stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = DEFAULT_STOP_GRACE_MS): Promise<ExitStatus> {
    if (this.stopping) return this.stopping;
    this.stopping = this.stopInner(signal, graceMs);
    return this.stopping;
  }

  /** SIGKILL now, without waiting. */
  kill(): void {
    if (this.killable) signalChild(this.killable, 'SIGKILL');
  }

  private async stopInner(signal: NodeJS.Signals, graceMs: number): Promise<ExitStatus> {
    if (!this.status && this.killable) {
      signalChild(this.killable, signal);
      if (!(await this.exitedWithin(graceMs))) {
        signalChild(this.killable, 'SIGKILL');
        if (!(await this.exitedWithin(KILL_REAP_LIMIT_MS))) {
          throw new HarnessError(
            'TIMEOUT',
            `${this.name} (pid ${this.killable.pid}) did not exit within ${KILL_REAP_LIMIT_MS} ms of SIGKILL`,
          );
        }
      }
    }
    const status = await this.exited;
    // Whatever the leader left behind in its group (e.g. a containerd) goes with it.
    if (this.killable?.group) signalChild(this.killable, 'SIGKILL');
    return status;
  }

  private async exitedWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.exited.then(() => true as const), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  private onData(stream: 'stdout' | 'stderr', chunk: string): void {
    const pieces = (this.partial[stream] + chunk).split('\n');
    this.partial[stream] = pieces.pop() ?? '';
    for (const line of pieces) this.onLine(line);
    if (this.partial[stream].length > 0) this.match(this.partial[stream]);
  }

  private flushPartial(stream: 'stdout' | 'stderr'): void {
    const rest = this.partial[stream];
    this.partial[stream] = '';
    if (rest.length > 0) this.onLine(rest);
  }

  private onLine(line: string): void {
    this.ring.push(line);
    if (VERBOSE) process.stderr.write(`[${this.name}] ${line}\n`);
    this.match(line);
  }

  private match(line: string): void {
    for (const w of this.waiters) {
      const m = w.re.exec(line);
      if (m) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve(m);
      }
    }
  }

  private markGone(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    this.flushPartial('stdout');
    this.flushPartial('stderr');
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(this.goneError(`waiting for output matching ${w.re}`));
    }
    this.waiters.clear();
  }

  private goneError(what: string): HarnessError {
    const s = this.status;
    if (s?.error) {
      return new HarnessError(
        'SPAWN_FAILED',
        `${this.name}: could not start ${this.command}: ${s.error.message} (${what})`,
        { cause: s.error },
      );
    }
    const how = s?.signal ? `signal ${s.signal}` : `code ${s?.code ?? 'unknown'}`;
    return new HarnessError(
      'PROCESS_EXITED',
      `${this.name} exited with ${how} while ${what}.\n--- output of ${this.name} ---\n${tail(this.output())}`,
    );
  }
}

/** Starts `cmd args` with its output captured; see ManagedProcess. */
export function spawnManaged(cmd: string, args: readonly string[], opts: SpawnManagedOptions = {}): ManagedProcess {
  return new ManagedProcess(cmd, args, opts);
}

// ---------------------------------------------------------------------------------------------
// Short commands

export interface RunCommandOptions {
  cwd?: string;
  /** Full environment of the child; defaults to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. Without it stdin is empty. */
  input?: string | Buffer;
  /** Default 120 s; the command's process group is killed when it passes. */
  timeoutMs?: number;
  /** Resolve with the result on a non-zero exit instead of rejecting. */
  allowFailure?: boolean;
  /** Per stream; output beyond it is dropped (default 64 MiB). */
  maxOutputBytes?: number;
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion, capturing stdout and stderr.
 * Rejects with COMMAND_FAILED (message includes both outputs), TIMEOUT or SPAWN_FAILED.
 */
export function runCommand(cmd: string, args: readonly string[], opts: RunCommandOptions = {}): Promise<CommandResult> {
  installExitHooks();
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const max = opts.maxOutputBytes ?? 64 * 1024 * 1024;
  const shown = [cmd, ...args].join(' ');
  return new Promise<CommandResult>((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const killable: Killable | null = child.pid === undefined ? null : { pid: child.pid, group: true };
    if (killable) liveChildren.add(killable);

    const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    const sizes = { stdout: 0, stderr: 0 };
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = child[stream];
      s.on('data', (b: Buffer) => {
        if (sizes[stream] >= max) return;
        const kept = b.length > max - sizes[stream] ? b.subarray(0, max - sizes[stream]) : b;
        chunks[stream].push(kept);
        sizes[stream] += kept.length;
      });
      s.on('error', () => {
        // only loses output; the exit status decides
      });
    }
    child.stdin.on('error', () => {
      // EPIPE if the command does not read its input; the exit status decides
    });
    child.stdin.end(opts.input ?? '');

    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (killable) signalChild(killable, 'SIGKILL');
    }, timeoutMs);

    const text = (stream: 'stdout' | 'stderr'): string => Buffer.concat(chunks[stream]).toString('utf8');
    const described = (): string =>
      `--- stdout ---\n${tail(text('stdout'))}\n--- stderr ---\n${tail(text('stderr'))}`;

    child.once('error', (err) => {
      if (child.pid !== undefined) return;
      clearTimeout(timer);
      reject(new HarnessError('SPAWN_FAILED', `could not start ${shown}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (killable) liveChildren.delete(killable);
      const result: CommandResult = { code, signal, stdout: text('stdout'), stderr: text('stderr') };
      if (timedOut) {
        reject(new HarnessError('TIMEOUT', `${shown} did not finish within ${timeoutMs} ms and was killed\n${described()}`));
      } else if (code !== 0 && !opts.allowFailure) {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        reject(new HarnessError('COMMAND_FAILED', `${shown} ${how}, expected exit code 0\n${described()}`));
      } else {
        resolve(result);
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Scratch folders

export interface TempDir {
  /** Real (symlink-free) absolute path; short enough for unix socket paths under it. */
  readonly path: string;
  /** Removes the folder; refuses (INVALID_ARGUMENT) while anything is still mounted under it. */
  remove(): Promise<void>;
}

/** The mount points at or under `dir`, from /proc/self/mountinfo. */
export function mountsUnder(dir: string): string[] {
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const line of info.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
    if (mp === dir || mp.startsWith(dir + '/')) found.push(mp);
  }
  return found;
}

/**
 * Creates a fresh folder under the system temp dir. Callers remove it in an `after` hook; what is
 * left is removed when the process exits (unless something is still mounted under it).
 */
export async function tempDir(prefix: string): Promise<TempDir> {
  installExitHooks();
  const safe = prefix.replace(/[^A-Za-z0-9_.-]/g, '-');
  const dir = await realpath(await mkdtemp(path.join(os.tmpdir(), `slipway-${safe}-`)));
  liveTempDirs.add(dir);
  let removed = false;
  return {
    path: dir,
    async remove() {
      if (removed) return;
      const mounts = mountsUnder(dir);
      if (mounts.length > 0) {
        throw new HarnessError(
          'INVALID_ARGUMENT',
          `refusing to remove ${dir}: still mounted under it: ${mounts.join(', ')} (stop the daemon that owns them first)`,
        );
      }
      await rm(dir, { recursive: true, force: true });
      removed = true;
      liveTempDirs.delete(dir);
    },
  };
}

