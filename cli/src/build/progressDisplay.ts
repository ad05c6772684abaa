import type { SolveProgress } from './buildStatus.js';
import { ProgressPrinter } from './progressPrinter.js';
import { RawJsonProgress } from './rawJsonProgress.js';
import { TtyProgress, type ProgressTerminal } from './ttyProgress.js';

export type { ProgressTerminal } from './ttyProgress.js';

// The build's progress in the mode --progress asked for (buildx's modes): one display for the
// whole build, one SolveProgress per platform's solve. auto is tty on a terminal, plain elsewhere.

export const PROGRESS_MODES = ['auto', 'tty', 'plain', 'quiet', 'rawjson'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

export function isProgressMode(value: string): value is ProgressMode {
  return (PROGRESS_MODES as readonly string[]).includes(value);
}

export interface ProgressDisplay {
  /** The progress of one solve; `prefix` tells platforms apart when there are several. */
  solve(prefix: string): SolveProgress;
  /** The build is over: the last frame stays (tty); nothing is drawn after. */
  finish(): void;
}

/** tty needs a terminal: on anything else (a CI log, a pipe) it is plain, as buildx does. */
export function effectiveMode(mode: ProgressMode, terminal: ProgressTerminal): Exclude<ProgressMode, 'auto'> {
  if (mode === 'auto' || mode === 'tty') return terminal.isTty ? 'tty' : 'plain';
  return mode;
}

export function progressDisplay(mode: ProgressMode, terminal: ProgressTerminal, write: (text: string) => void): ProgressDisplay {
  const effective = effectiveMode(mode, terminal);
  if (effective === 'tty') {
    const tty = new TtyProgress(write, terminal);
    return { solve: (prefix) => tty.solve(prefix), finish: () => tty.finish() };
  }
  return {
    solve: (prefix) => (effective === 'rawjson' ? new RawJsonProgress(write) : new ProgressPrinter(effective, write, prefix)),
    finish: () => {},
  };
}
