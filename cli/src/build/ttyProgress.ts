import { byteSize, secondsOf, type FailedStep, type SolveProgress, type StatusMessage } from './buildStatus.js';

// buildx's tty mode: one live view of every solve, redrawn in place on the terminal (the cursor
// moved back up over the last frame), steps with their timings, CACHED and ERROR, transfers, the
// last log lines of running steps; the final frame stays, with the failing step's log under it.
// Frames are drawn by one timer at a bounded rate, never per message: a chatty RUN step sends
// hundreds of messages a second. The builder's clock is not ours, so a running step's time is
// measured from when its solve's first start was seen here.

export interface ProgressTerminal {
  /** Whether stderr is a terminal (auto picks tty then). */
  isTty: boolean;
  columns(): number;
  rows(): number;
}

const REFRESH_MS = 100;
const LIVE_LOG_LINES = 6;
const FINAL_ERROR_LOG_LINES = 12;
const TAIL_LINES = 20;
const ESC = '\x1b';

interface Transfer {
  id: string;
  current: number;
  total: number;
  started: number | undefined;
  completed: number | undefined;
}

interface Step {
  solve: TtySolve;
  name: string;
  /** When it was first seen started or cached: steps are listed in the order they began, as they ran. */
  order: number;
  started: number | undefined;
  completed: number | undefined;
  cached: boolean;
  error: string;
  tail: string[];
  partial: string;
  transfers: Map<string, Transfer>;
}

/** Log text made safe for a frame: the last of \r-overwritten text, no escapes or control characters. */
function cleanLine(line: string): string {
  const lastReturn = line.lastIndexOf('\r', line.length - 2);
  const visible = (lastReturn >= 0 ? line.slice(lastReturn + 1) : line).replace(/\r$/, '');
  return visible.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/\t/g, '    ').replace(/[\x00-\x1f\x7f]/g, '');
}

/** At most `width` characters (code points), so no line wraps and the cursor arithmetic holds. */
function fit(text: string, width: number): string {
  const chars = [...text];
  return chars.length <= width ? text : chars.slice(0, Math.max(0, width)).join('');
}

/** `left` and a right-aligned `right` on one line of `width`. */
function aligned(left: string, right: string, width: number): string {
  const room = width - right.length - 1;
  if (room < 10) return fit(`${left} ${right}`, width);
  const shown = fit(left, room);
  return `${shown}${' '.repeat(room - [...shown].length + 1)}${right}`;
}

class TtySolve implements SolveProgress {
  /** Local seconds minus the builder's seconds, set at the first start seen. */
  offset: number | undefined;
  readonly steps = new Map<string, Step>();

  constructor(
    private readonly view: TtyProgress,
    readonly prefix: string,
  ) {}

  update(status: StatusMessage): void {
    this.view.changed();
    for (const v of status.vertexes) {
      const step = this.step(v.digest, v.name);
      const started = secondsOf(v.started);
      if (started !== undefined) {
        step.started = started;
        this.offset ??= this.view.nowSeconds() - started;
      }
      step.cached ||= v.cached;
      if (step.order < 0 && (step.started !== undefined || step.cached)) step.order = this.view.nextOrder();
      const completed = secondsOf(v.completed);
      if (completed !== undefined) step.completed = completed;
      if (v.error) step.error = v.error;
    }
    for (const s of status.statuses) {
      const step = this.steps.get(s.vertex);
      if (!step) continue;
      const t = step.transfers.get(s.ID) ?? { id: s.ID, current: 0, total: 0, started: undefined, completed: undefined };
      t.current = Number(s.current);
      t.total = Number(s.total);
      t.started = secondsOf(s.started) ?? t.started;
      t.completed = secondsOf(s.completed) ?? t.completed;
      step.transfers.set(s.ID, t);
    }
    for (const log of status.logs) {
      const step = this.steps.get(log.vertex);
      if (!step) continue;
      const lines = (step.partial + log.msg.toString()).split('\n');
      step.partial = lines.pop() ?? '';
      for (const line of lines) {
        step.tail.push(cleanLine(line));
        if (step.tail.length > TAIL_LINES) step.tail.shift();
      }
    }
    for (const w of status.warnings) this.view.warn(`${this.prefix}${w.short.toString()}`);
  }

  failedStep(): FailedStep | undefined {
    for (const step of this.steps.values()) if (step.error) return { name: step.name, error: step.error, tail: this.logOf(step, TAIL_LINES) };
    return undefined;
  }

  /** The last `n` log lines, the unfinished one included. */
  logOf(step: Step, n: number): string[] {
    const lines = step.partial === '' ? step.tail : [...step.tail, cleanLine(step.partial)];
    return lines.slice(-n);
  }

  private step(digest: string, name: string): Step {
    let step = this.steps.get(digest);
    if (!step) {
      step = { solve: this, name, order: -1, started: undefined, completed: undefined, cached: false, error: '', tail: [], partial: '', transfers: new Map() };
      this.steps.set(digest, step);
    }
    return step;
  }
}

export class TtyProgress {
  private readonly solves: TtySolve[] = [];
  private readonly warnings: string[] = [];
  private readonly startedAt: number;
  private order = 0;
  private height = 0;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(
    private readonly write: (text: string) => void,
    private readonly terminal: ProgressTerminal,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now();
  }

  /** The progress of one solve; its steps' names carry `prefix` (the platform, with several). */
  solve(prefix: string): SolveProgress {
    const solve = new TtySolve(this, prefix);
    this.solves.push(solve);
    if (!this.timer && !this.finished) {
      this.timer = setInterval(() => this.tick(), REFRESH_MS);
      // Cleared by finish(); unref'd so a build that throws before finish() cannot hang the CLI.
      this.timer.unref();
    }
    return solve;
  }

  /** Stops the redraws and leaves the final frame (every step, the failed one's log) and the warnings. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.timer);
    this.timer = undefined;
    this.draw(true);
    if (this.warnings.length > 0) {
      this.write(`${this.warnings.length} warning${this.warnings.length === 1 ? '' : 's'} found:\n${this.warnings.map((w) => ` - ${w}\n`).join('')}`);
    }
  }

  /** Draws a frame now if anything changed or a step is running (its time moves). */
  tick(): void {
    if (this.finished) return;
    if (this.dirty || this.running()) this.draw(false);
  }

  /** The frame's lines, fitted to the terminal's width (exposed for the renderer's tests). */
  frame(final: boolean): string[] {
    const width = Math.max(1, this.terminal.columns());
    const steps = this.solves.flatMap((s) => [...s.steps.values()]).sort((a, b) => a.order - b.order);
    const done = steps.filter((s) => s.cached || s.completed !== undefined).length;
    const elapsed = (this.now() - this.startedAt) / 1000;
    const header = fit(`[+] Building ${elapsed.toFixed(1)}s (${done}/${steps.length})${final ? ' FINISHED' : ''}`, width);
    const blocks: { lines: string[]; done: boolean }[] = [];
    for (const step of steps) {
      if (step.started === undefined && !step.cached) continue;
      const label = step.error ? 'ERROR ' : step.cached ? 'CACHED ' : '';
      const lines = [aligned(` => ${label}${step.solve.prefix}${step.name}`, `${this.secondsOf(step, step.started, step.completed).toFixed(1)}s`, width)];
      for (const t of step.transfers.values()) {
        const amount = t.total > 0 ? `${byteSize(t.current)} / ${byteSize(t.total)}` : byteSize(t.current);
        lines.push(aligned(` => => ${t.id} ${amount}${t.completed !== undefined ? ' done' : ''}`, `${this.secondsOf(step, t.started, t.completed).toFixed(1)}s`, width));
      }
      const running = step.completed === undefined && !step.cached;
      const logLines = step.error ? (final ? FINAL_ERROR_LOG_LINES : LIVE_LOG_LINES) : running && !final ? LIVE_LOG_LINES : 0;
      if (logLines > 0) for (const line of step.solve.logOf(step, logLines)) lines.push(fit(` => => # ${line}`, width));
      blocks.push({ lines, done: !running && !step.error });
    }
    if (!final) {
      // A live frame must fit the screen, or the cursor cannot get back to its top: the oldest
      // finished steps go first, then the oldest of the rest.
      const room = Math.max(1, this.terminal.rows() - 2);
      let count = blocks.reduce((n, b) => n + b.lines.length, 0);
      for (let i = 0; i < blocks.length && count > room; i++) {
        if (!blocks[i]!.done) continue;
        count -= blocks[i]!.lines.length;
        blocks.splice(i--, 1);
      }
      const lines = blocks.flatMap((b) => b.lines);
      return [header, ...lines.slice(Math.max(0, lines.length - room))];
    }
    return [header, ...blocks.flatMap((b) => b.lines)];
  }

  /** @internal */
  changed(): void {
    this.dirty = true;
  }

  /** @internal */
  nowSeconds(): number {
    return this.now() / 1000;
  }

  /** @internal */
  nextOrder(): number {
    return this.order++;
  }

  /** @internal */
  warn(text: string): void {
    this.warnings.push(text);
  }

  private running(): boolean {
    return this.solves.some((s) => [...s.steps.values()].some((step) => step.started !== undefined && step.completed === undefined && !step.cached));
  }

  private secondsOf(step: Step, started: number | undefined, completed: number | undefined): number {
    if (started === undefined) return 0;
    const end = completed ?? this.nowSeconds() - (step.solve.offset ?? 0);
    return Math.max(0, end - started);
  }

  private draw(final: boolean): void {
    this.dirty = false;
    const lines = this.frame(final);
    let out = this.height > 0 ? `${ESC}[${this.height}A\r` : '';
    for (const line of lines) out += `${ESC}[2K${line}\n`;
    // Whatever the last frame left below this one.
    out += `${ESC}[J`;
    this.height = lines.length;
    this.write(out);
  }
}
