// The e2e harness's one error class. Tests match on `code`, never on message text.
export type HarnessErrorCode =
  | 'SPAWN_FAILED' // a program could not be started at all (missing binary, bad cwd)
  | 'COMMAND_FAILED' // a command ran and exited non-zero or by a signal
  | 'PROCESS_EXITED' // a long-running process exited while something still waited on it
  | 'TIMEOUT' // a deadline for startup, output or exit passed
  | 'NOT_AVAILABLE' // a machine prerequisite (binary, package) is missing
  | 'PROTOCOL' // a peer answered with something other than what its protocol allows
  | 'INVALID_ARGUMENT'; // the harness was called with something it cannot use

export class HarnessError extends Error {
  override readonly name = 'HarnessError';
  readonly code: HarnessErrorCode;

  constructor(code: HarnessErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
