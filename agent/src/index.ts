export { Agent, type AgentState, type LiveGatewayLink } from './agent.js';
export { loadConfig, type AgentConfig, hostPlatform, MAX_GATEWAY_LINKS } from './config.js';
export { AgentError, type AgentErrorCode, AgentErrorCodes } from './agentError.js';
export { parseUpstream, type Upstream } from './upstream.js';
