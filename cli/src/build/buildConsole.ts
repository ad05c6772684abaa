import type { ProgressTerminal } from './ttyProgress.js';

// Where `slipway build` writes, and what it knows of the terminal behind stderr: given by the
// program's entry point, so the build never looks at process globals itself.
export interface BuildConsole extends ProgressTerminal {
  /** Progress and reports (buildx writes them to stderr). */
  stderr(text: string): void;
  /** Results meant for a pipe: the image ID in quiet mode. */
  stdout(text: string): void;
}
