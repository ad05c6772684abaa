export const CliErrorCodes = [
  'CONFIG_INVALID',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'PROXY_FAILED',
  'PROXY_AUTH',
  'GATEWAY_UNREACHABLE',
  'TLS_FAILED',
  'TUNNEL_REFUSED',
  'TUNNEL_FAILED',
  'AGENT_LOST',
  'NO_AGENT',
  'BUILD_ENDED',
  'INVALID_REQUEST',
  'NOT_FOUND',
  'CONFLICT',
  'RATE_LIMITED',
  'ISSUER_UNAVAILABLE',
  'DOCKER_SETUP',
  'REGISTRY_FAILED',
  'UNSUPPORTED',
  'INTERNAL',
] as const;
export type CliErrorCode = (typeof CliErrorCodes)[number];

export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: CliErrorCode;

  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CliError('INTERNAL', message, { cause: err });
}

// Exit codes are part of the CLI's interface: scripts branch on them, so a code never changes
// meaning once released. Each error code gets its own exit code so a wrapper can tell "fix your
// proxy settings" from "the gateway is down" without parsing stderr.
//
//   exit  code                 meaning
//   ----  -------------------  ----------------------------------------------------------
//     0   (success)
//     1   (not used here)      left free for "the remote command itself failed"
//     2   CONFIG_INVALID       bad flags, environment or config file (2 = usage, by habit)
//     3   UNAUTHENTICATED      the gateway did not accept our token
//     4   FORBIDDEN            the token is valid but may not do this
//     5   PROXY_FAILED         the HTTP proxy could not be reached or refused the tunnel
//     6   PROXY_AUTH           the HTTP proxy rejected (or demanded) credentials (407)
//     7   GATEWAY_UNREACHABLE  no TCP connection to the gateway
//     8   TLS_FAILED           TLS handshake with the gateway failed (certificate, ALPN, ...)
//     9   TUNNEL_REFUSED       the gateway refused to open the build tunnel
//    10   TUNNEL_FAILED        the tunnel broke after it was open
//    11   AGENT_LOST           the build agent went away mid-build
//    12   NO_AGENT             no builder for the requested platform (none free in time)
//    13   BUILD_ENDED          the gateway ended the build (finished, cancelled or expired)
//    14   INVALID_REQUEST      the gateway refused what was asked (its message names every problem)
//    15   NOT_FOUND            no such project, token or trust policy
//    16   CONFLICT             it already exists (a project)
//    17   RATE_LIMITED         the gateway asks to slow down; retrying later can succeed
//    18   ISSUER_UNAVAILABLE   the gateway could not check the CI's OIDC token with its issuer;
//                              retrying later can succeed
//    19   DOCKER_SETUP         what configure-docker set up is not as it left it (the daemon is
//                              down, a file was changed): slipway doctor says what
//    20   REGISTRY_FAILED      an image registry refused, failed or could not be reached while the
//                              CLI itself spoke to it (the multi-platform index of --push)
//    21   UNSUPPORTED          the builder cannot do what was asked of it
//    70   INTERNAL             a bug in the CLI (70 = EX_SOFTWARE from sysexits.h)
//
// Codes stay below 64 except INTERNAL, and well clear of 126..165, which shells use for
// "not executable", "not found" and death by signal.
const exitCodes: Readonly<Record<CliErrorCode, number>> = {
  CONFIG_INVALID: 2,
  UNAUTHENTICATED: 3,
  FORBIDDEN: 4,
  PROXY_FAILED: 5,
  PROXY_AUTH: 6,
  GATEWAY_UNREACHABLE: 7,
  TLS_FAILED: 8,
  TUNNEL_REFUSED: 9,
  TUNNEL_FAILED: 10,
  AGENT_LOST: 11,
  NO_AGENT: 12,
  BUILD_ENDED: 13,
  INVALID_REQUEST: 14,
  NOT_FOUND: 15,
  CONFLICT: 16,
  RATE_LIMITED: 17,
  ISSUER_UNAVAILABLE: 18,
  DOCKER_SETUP: 19,
  REGISTRY_FAILED: 20,
  UNSUPPORTED: 21,
  INTERNAL: 70,
};

export function exitCodeOf(code: CliErrorCode): number {
  return exitCodes[code];
}
