import { byteSize, secondsOf, type FailedStep, type SolveProgress, type StatusMessage } from './buildStatus.js';

export type { FailedStep, StatusMessage } from './buildStatus.js';

// BuildKit's Status stream as buildx's plain mode writes it: steps numbered in the order they
// appear, their logs prefixed with the step number and the seconds since it started,
// DONE/CACHED/ERROR lines. Quiet keeps the same bookkeeping and writes nothing. Either way the
// log tail of every step is kept for the error report.

const TAIL_LINES = 20;

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

export class ProgressPrinter implements SolveProgress {
  private readonly steps = new Map<string, StepState>();
  private next = 1;

  constructor(
    private readonly mode: 'plain' | 'quiet',
    private readonly write: (text: string) => void,
    /** Set with several platforms, so their lines can be told apart. */
    private readonly prefix = '',
  ) {}

  update(status: StatusMessage): void {
    for (const v of status.vertexes) {
      const step = this.step(v.digest, v.name);
      step.started = secondsOf(v.started) ?? step.started;
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
        } else this.line(step, `DONE ${((secondsOf(v.completed) ?? 0) - (step.started ?? secondsOf(v.completed) ?? 0)).toFixed(1)}s`);
      }
    }
    for (const s of status.statuses) {
      const step = this.steps.get(s.vertex);
      if (!step || !s.completed) continue;
      const total = Number(s.total);
      this.line(step, `${s.ID} ${total > 0 ? `${s.current}/${total}` : byteSize(Number(s.current))} done`);
    }
    for (const log of status.logs) {
      const step = this.steps.get(log.vertex);
      if (!step) continue;
      const text = step.partial + log.msg.toString();
      const lines = text.split('\n');
      step.partial = lines.pop() ?? '';
      const at = (secondsOf(log.timestamp) ?? 0) - (step.started ?? secondsOf(log.timestamp) ?? 0);
      for (const l of lines) this.logLine(step, l, at);
    }
    for (const w of status.warnings) if (this.mode === 'plain') this.write(`${this.prefix}WARNING: ${w.short.toString()}\n`);
  }

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
