export { Agent, type AgentState } from './agent.js';
export { loadConfig, type AgentConfig, hostPlatform } from './config.js';
export { AgentError, type AgentErrorCode, AgentErrorCodes } from './agentError.js';
export { parseUpstream, type Upstream } from './upstream.js';
