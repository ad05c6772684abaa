import type { WireErrorCode } from '@slipway/proto';

export const AgentErrorCodes = [
  'CONFIG_INVALID',
  'UNAUTHENTICATED',
  'GATEWAY_UNREACHABLE',
  'GATEWAY_PROTOCOL',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_PROTOCOL',
  'UPSTREAM_FAILED',
  'DRAINING',
  // The stream asks for something this agent's upstream cannot do (a session attachment to a buildkitd).
  'UNSUPPORTED',
  'INTERNAL',
] as const;
export type AgentErrorCode = (typeof AgentErrorCodes)[number];

export class AgentError extends Error {
  override readonly name = 'AgentError';
  readonly code: AgentErrorCode;

  constructor(code: AgentErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function toAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new AgentError('INTERNAL', message, { cause: err });
}

// The wire carries a smaller set. An upstream that answers in a way we cannot use is, from the
// client's side, an upstream it cannot reach; problems with the gateway link never reach a
// client through that same link, so they fold into INTERNAL.
export function wireCodeOf(code: AgentErrorCode): WireErrorCode {
  switch (code) {
    case 'UPSTREAM_PROTOCOL':
      return 'UPSTREAM_UNAVAILABLE';
    case 'CONFIG_INVALID':
    case 'GATEWAY_UNREACHABLE':
    case 'GATEWAY_PROTOCOL':
      return 'INTERNAL';
    default:
      return code;
  }
}
