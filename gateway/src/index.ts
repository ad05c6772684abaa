export { Gateway, type GatewayOptions } from './gateway.js';
export { GatewayError, type GatewayErrorCode, GatewayErrorCodes } from './gatewayError.js';
export { loadConfig, type GatewayConfig } from './config.js';
export { TokenVerifier, parseBearer, loadVerificationKeys } from './tokenVerifier.js';
export { TokenIssuer, generateSigningKey } from './tokenIssuer.js';
export { ensureDevPki, makeTestPki, type DevPki, type TestPki } from './devPki.js';
