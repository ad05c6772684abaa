import type { FailedStep } from './progressPrinter.js';

// The build itself failed on the builder (a step exited non-zero, the Dockerfile is wrong):
// the remote command failed, which the CLI reports with exit code 1, unlike Slipway's own
// failures (a lost tunnel, a refused token) which have codes of their own.
export class BuildFailure extends Error {
  override readonly name = 'BuildFailure';

  constructor(
    readonly platform: string,
    readonly details: string,
    readonly step: FailedStep | undefined,
    readonly sessionError: Error | undefined,
  ) {
    super(`build for ${platform} failed: ${details}`);
  }

  /** What the user reads: the failing step, its last log lines, and BuildKit's message. */
  report(): string {
    const lines = [`ERROR: failed to build ${this.platform}: ${this.details}`];
    if (this.step) {
      lines.push(`------`, ` > ${this.step.name}:`, ...this.step.tail.map((l) => `   ${l}`), `------`);
    }
    if (this.sessionError) lines.push(`(the build's session failed too: ${this.sessionError.message})`);
    return `${lines.join('\n')}\n`;
  }
}
