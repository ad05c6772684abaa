// BuildKit's Status stream shown as buildx shows it. `plain` is buildx's plain mode (steps
// numbered in the order they appear, their logs prefixed with the step number and the seconds
// since it started, DONE/CACHED/ERROR lines); `rawjson` prints each status message as one JSON
// line; `quiet` prints nothing. The log tail of every step is kept for the error report.

export type ProgressMode = 'plain' | 'rawjson' | 'quiet';

interface Timestamp {
  seconds: string;
  nanos: number;
}
export interface StatusMessage {
  vertexes: { digest: string; inputs: string[]; name: string; cached: boolean; started: Timestamp | null; completed: Timestamp | null; error: string }[];
  statuses: { ID: string; vertex: string; name: string; current: string; total: string; timestamp: Timestamp | null; started: Timestamp | null; completed: Timestamp | null }[];
  logs: { vertex: string; timestamp: Timestamp | null; stream: string; msg: Buffer }[];
  warnings: { vertex: string; level: string; short: Buffer; detail: Buffer[]; url: string }[];
}

const TAIL_LINES = 20;

function seconds(t: Timestamp | null): number | undefined {
  return t === null ? undefined : Number(t.seconds) + t.nanos / 1e9;
}

interface StepState {
  number: number;
  name: string;
  started: number | undefined;
  announced: boolean;
  ended: boolean;
  error: string;
  tail: string[];
  partial: string;
}

export interface FailedStep {
  name: string;
  error: string;
  tail: string[];
}

export class ProgressPrinter {
  private readonly steps = new Map<string, StepState>();
  private next = 1;

  constructor(
    private readonly mode: ProgressMode,
    private readonly write: (text: string) => void,
    /** Set with several platforms, so their lines can be told apart. */
    private readonly prefix = '',
  ) {}

  update(status: StatusMessage): void {
    if (this.mode === 'rawjson') this.write(`${JSON.stringify(status, (_k, v: unknown) => (isBufferJson(v) ? Buffer.from(v.data).toString('base64') : v))}\n`);
    for (const v of status.vertexes) {
      const step = this.step(v.digest, v.name);
      step.started = seconds(v.started) ?? step.started;
      if (v.cached && !step.ended) {
        this.announce(step);
        this.line(step, 'CACHED');
        step.ended = true;
      } else if (v.started && !step.announced) this.announce(step);
      if (v.completed && !step.ended) {
        step.ended = true;
        this.announce(step);
        this.flushPartial(step);
        if (v.error) {
          step.error = v.error;
          this.line(step, `ERROR: ${v.error}`);
        } else this.line(step, `DONE ${((seconds(v.completed) ?? 0) - (step.started ?? seconds(v.completed) ?? 0)).toFixed(1)}s`);
      }
    }
    for (const s of status.statuses) {
      const step = this.steps.get(s.vertex);
      if (!step || !s.completed) continue;
      const total = Number(s.total);
      this.line(step, `${s.ID} ${total > 0 ? `${s.current}/${total}` : bytes(Number(s.current))} done`);
    }
    for (const log of status.logs) {
      const step = this.steps.get(log.vertex);
      if (!step) continue;
      const text = step.partial + log.msg.toString();
      const lines = text.split('\n');
      step.partial = lines.pop() ?? '';
      const at = (seconds(log.timestamp) ?? 0) - (step.started ?? seconds(log.timestamp) ?? 0);
      for (const l of lines) this.logLine(step, l, at);
    }
    for (const w of status.warnings) this.write(`${this.prefix}WARNING: ${w.short.toString()}\n`);
  }

  /** The step that failed (its name, error and last log lines), when one did. */
  failedStep(): FailedStep | undefined {
    for (const step of this.steps.values()) if (step.error) return { name: step.name, error: step.error, tail: step.tail };
    return undefined;
  }

  private step(digest: string, name: string): StepState {
    let step = this.steps.get(digest);
    if (!step) {
      step = { number: this.next++, name, started: undefined, announced: false, ended: false, error: '', tail: [], partial: '' };
      this.steps.set(digest, step);
    }
    return step;
  }

  private announce(step: StepState): void {
    if (step.announced) return;
    step.announced = true;
    if (this.mode === 'plain') this.write(`\n${this.prefix}#${step.number} ${step.name}\n`);
  }

  private line(step: StepState, text: string): void {
    if (this.mode === 'plain') this.write(`${this.prefix}#${step.number} ${text}\n`);
  }

  private logLine(step: StepState, text: string, at: number): void {
    step.tail.push(text);
    if (step.tail.length > TAIL_LINES) step.tail.shift();
    this.line(step, `${at.toFixed(3)} ${text}`);
  }

  private flushPartial(step: StepState): void {
    if (step.partial === '') return;
    this.logLine(step, step.partial, 0);
    step.partial = '';
  }
}

function isBufferJson(v: unknown): v is { type: 'Buffer'; data: number[] } {
  return typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data);
}

function bytes(n: number): string {
  if (n < 1024) return `${n}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(2)}kB`;
  return `${(n / 1024 / 1024).toFixed(2)}MB`;
}
