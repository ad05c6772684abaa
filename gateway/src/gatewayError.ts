import { isWireErrorCode, type WireErrorCode } from '@slipway/proto';

export const GatewayErrorCodes = [
  'CONFIG_INVALID',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'BAD_REQUEST',
  'HEADERS_TOO_LARGE',
  'UNKNOWN_PLATFORM',
  'NO_AGENT',
  'NO_CAPACITY',
  'AGENT_LOST',
  'AGENT_PROTOCOL',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_FAILED',
  'DRAINING',
  'NOT_FOUND',
  'CONFLICT',
  'BUILD_ENDED',
  'ROUTING_UNAVAILABLE',
  'STALE_LEADER',
  'FLEET_FAILED',
  'RATE_LIMITED',
  // Only ever passed on from an agent (agentReportedError): its builder cannot do what the stream asks.
  'UNSUPPORTED',
  'INTERNAL',
] as const;
export type GatewayErrorCode = (typeof GatewayErrorCodes)[number];

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: GatewayErrorCode;

  constructor(code: GatewayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new GatewayError('INTERNAL', message, { cause: err });
}

// The wire carries a smaller set: codes that only matter inside the gateway fold into INTERNAL.
export function wireCodeOf(code: GatewayErrorCode): WireErrorCode {
  switch (code) {
    case 'CONFIG_INVALID':
    case 'AGENT_PROTOCOL':
    case 'STALE_LEADER':
    case 'FLEET_FAILED':
      return 'INTERNAL';
    default:
      return code;
  }
}

// A failure an agent reported (trailers, a lane's ERROR): its wire code where it is one the
// client can act on, else UPSTREAM_FAILED.
export function agentReportedError(code: string, message: string): GatewayError {
  return new GatewayError(isWireErrorCode(code) && code !== 'INTERNAL' ? code : 'UPSTREAM_FAILED', message);
}
