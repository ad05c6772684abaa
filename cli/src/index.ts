export { TunnelClient, type TunnelClientOptions, type ProjectTokenSource } from './tunnelClient.js';
export { GatewayConnection, type GatewayConnectionOptions } from './gatewayConnection.js';
export { AdminClient } from './adminClient.js';
export { OidcTokenExchange, type OidcTokenExchangeOptions } from './oidcTokenExchange.js';
export { credentialsPath, readCredentials, writeCredentials, removeCredentials, type StoredCredentials } from './credentials.js';
export { LocalProxy } from './localProxy.js';
export { bridgeLocal, type LocalEnd } from './localBridge.js';
export { loadConfig, DEFAULT_OIDC_AUDIENCE, type CliConfig, type CliCommand } from './config.js';
export { CliError, type CliErrorCode, exitCodeOf } from './cliError.js';
export { NODE_FLAGS, launcherPreamble } from './nodeFlags.js';
export type { TunnelStream } from './tunnelStream.js';
export {
  fetchCiOidcToken,
  detectCi,
  DEFAULT_GITLAB_TOKEN_VARIABLE,
  type CiName,
  type CiOidcToken,
  type CiOidcTokenOptions,
} from './ciOidcToken.js';
