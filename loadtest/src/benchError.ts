// The one error class of the loadtest package. Codes are a closed set; the bench's exit code is
// derived from them in one place.
export const BenchErrorCodes = [
  'CONFIG_INVALID',
  'PROCESS_FAILED',
  'TIMEOUT',
  'PROTOCOL',
  'MEASUREMENT_FAILED',
  'INTERRUPTED',
  'INTERNAL',
] as const;
export type BenchErrorCode = (typeof BenchErrorCodes)[number];

export class BenchError extends Error {
  override readonly name = 'BenchError';
  readonly code: BenchErrorCode;

  constructor(code: BenchErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function toBenchError(err: unknown): BenchError {
  if (err instanceof BenchError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BenchError('INTERNAL', message, { cause: err });
}

//   exit  code
//     2   CONFIG_INVALID
//     3   PROCESS_FAILED      a gateway, agent, proxy, upstream or client process failed
//     4   TIMEOUT
//     5   PROTOCOL / MEASUREMENT_FAILED   bytes went missing or a sample failed
//   130   INTERRUPTED         SIGINT / SIGTERM
//     1   INTERNAL
export function exitCodeOf(code: BenchErrorCode): number {
  switch (code) {
    case 'CONFIG_INVALID':
      return 2;
    case 'PROCESS_FAILED':
      return 3;
    case 'TIMEOUT':
      return 4;
    case 'PROTOCOL':
    case 'MEASUREMENT_FAILED':
      return 5;
    case 'INTERRUPTED':
      return 130;
    case 'INTERNAL':
      return 1;
  }
}
