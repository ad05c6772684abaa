export { TunnelClient, type TunnelClientOptions } from './tunnelClient.js';
export { LocalProxy } from './localProxy.js';
export { bridgeLocal, type LocalEnd } from './localBridge.js';
export { loadConfig, type CliConfig } from './config.js';
export { CliError, type CliErrorCode, exitCodeOf } from './cliError.js';
export type { TunnelStream } from './tunnelStream.js';
export {
  fetchCiOidcToken,
  detectCi,
  DEFAULT_GITLAB_TOKEN_VARIABLE,
  type CiName,
  type CiOidcToken,
  type CiOidcTokenOptions,
} from './ciOidcToken.js';
