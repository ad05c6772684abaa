// The dev launcher's one error class. It is not a workspace package, but it is a program with
// its own edge (exit code), so it follows the same rule as the packages.
export const DevLauncherErrorCodes = ['CONFIG_INVALID', 'STARTUP_FAILED'] as const;
export type DevLauncherErrorCode = (typeof DevLauncherErrorCodes)[number];

export class DevLauncherError extends Error {
  override readonly name = 'DevLauncherError';
  readonly code: DevLauncherErrorCode;

  constructor(code: DevLauncherErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function toDevLauncherError(err: unknown): DevLauncherError {
  if (err instanceof DevLauncherError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new DevLauncherError('STARTUP_FAILED', message, { cause: err });
}

/** Exit code for each error: 2 for a configuration the user must fix, 1 for everything else. */
export function exitCodeOf(error: DevLauncherError): number {
  return error.code === 'CONFIG_INVALID' ? 2 : 1;
}
