// Child processes of the bench: the upstream, the gateway, the agent, the CLI proxies and the
// bench client. Each runs in its own process group, so a Ctrl-C reaches only the orchestrator,
// which then stops them in order; whatever is still alive when the orchestrator exits, for any
// reason, is SIGKILLed from its 'exit' hook.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { BenchError } from './benchError.js';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface BenchProcessOptions {
  name: string;
  command: string;
  args: readonly string[];
  cwd: string;
  /** The child's whole environment. */
  env: NodeJS.ProcessEnv;
  /** Print the child's output as it comes (prefixed by its name). */
  echo?: boolean;
}

const TAIL_LINES = 200;
const TAIL_LINE_CHARS = 2_000;
const live = new Set<BenchProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) p.killNow();
  });
}

export class BenchProcess extends EventEmitter<{ line: [line: string, stream: 'stdout' | 'stderr'] }> {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<ExitStatus>;
  private readonly tail: string[] = [];
  private readonly partial = { stdout: '', stderr: '' };
  private status: ExitStatus | undefined;
  private stopping: Promise<ExitStatus> | undefined;
  private stopRequested = false;

  constructor(private readonly options: BenchProcessOptions) {
    super();
    installExitHook();
    this.name = options.name;
    this.child = spawn(options.command, [...options.args], { cwd: options.cwd, env: options.env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(this);
    this.child.stdin!.on('error', () => {});
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = this.child[stream]!;
      s.setEncoding('utf8');
      s.on('error', () => {});
      s.on('data', (chunk: string) => {
        const pieces = (this.partial[stream] + chunk).split('\n');
        this.partial[stream] = pieces.pop() ?? '';
        for (const line of pieces) this.onLine(stream, line);
      });
    }
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        if (this.child.pid !== undefined) return;
        this.tail.push(`could not start ${options.command}: ${err.message}`);
        this.status = { code: null, signal: null };
        live.delete(this);
        resolve(this.status);
      });
      this.child.once('exit', (code, signal) => {
        this.status = { code, signal };
        live.delete(this);
        resolve(this.status);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  /** The last lines the process printed (stdout and stderr interleaved). */
  output(): string {
    return [...this.tail, this.partial.stdout, this.partial.stderr].filter((l) => l !== '').join('\n');
  }

  describeExit(): string {
    const s = this.status;
    let how = s === undefined ? 'is running' : s.signal ? `was killed by ${s.signal}` : `exited with code ${s.code}`;
    // Slipway's programs exit 0 only after SIGTERM/SIGINT; if the bench did not send it, another
    // process did (a `pkill -f gateway/src/main.ts` elsewhere on the machine, say).
    if (s !== undefined && !this.stopRequested) how += ' without being stopped by the bench';
    return `${this.name} (pid ${this.pid ?? '?'}) ${how}\n--- last output of ${this.name} ---\n${this.output() || '(none)'}`;
  }

  /** Resolves with the first line of output matching `re`; rejects on timeout or exit. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    for (const line of this.tail) {
      const m = re.exec(line);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const onLine = (line: string): void => {
        const m = re.exec(line);
        if (m) done(() => resolve(m));
      };
      const timer = setTimeout(
        () => done(() => reject(new BenchError('TIMEOUT', `${this.name}: expected output matching ${re} within ${timeoutMs} ms\n${this.describeExit()}`))),
        timeoutMs,
      );
      const onExit = (): void =>
        done(() => reject(new BenchError('PROCESS_FAILED', `${this.name} ended while the bench waited for output matching ${re}\n${this.describeExit()}`)));
      const done = (settle: () => void): void => {
        clearTimeout(timer);
        this.off('line', onLine);
        this.child.off('exit', onExit);
        settle();
      };
      this.on('line', onLine);
      this.child.once('exit', onExit);
    });
  }

  /** Writes one line to the child's stdin. */
  writeLine(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`. Idempotent. */
  stop(graceMs = 5_000): Promise<ExitStatus> {
    this.stopRequested = true;
    this.stopping ??= (async () => {
      if (this.status === undefined) {
        this.signal('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const inTime = await Promise.race([
          this.exited.then(() => true),
          new Promise<false>((resolve) => {
            timer = setTimeout(() => resolve(false), graceMs);
          }),
        ]);
        clearTimeout(timer);
        if (!inTime) this.signal('SIGKILL');
      }
      const status = await this.exited;
      // Anything the leader left in its group goes with it.
      this.signal('SIGKILL');
      this.child.stdin?.destroy();
      return status;
    })();
    return this.stopping;
  }

  /** SIGKILL to the group, synchronously (for exit hooks). */
  killNow(): void {
    this.signal('SIGKILL');
  }

  private signal(signal: NodeJS.Signals): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // ESRCH: the group is gone already.
    }
  }

  private onLine(stream: 'stdout' | 'stderr', line: string): void {
    // Result lines can be large (every latency sample); the tail is for diagnostics only.
    this.tail.push(line.length > TAIL_LINE_CHARS ? `${line.slice(0, TAIL_LINE_CHARS)}...` : line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    if (this.options.echo) process.stderr.write(`[${this.name}] ${line}\n`);
    this.emit('line', line, stream);
  }
}
