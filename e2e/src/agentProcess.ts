import path from 'node:path';
import { spawnManaged, type ManagedProcess } from './processes.js';
import { REPO_ROOT } from './cliProcess.js';
import { waitFor, type SlipwayStack } from './slipwayStack.js';

// The real slipway-agent program as its own process (so it can be killed or signalled), joined
// to a test stack; resolves once the gateway has registered it.
export async function startAgentProcess(
  stack: SlipwayStack,
  spec: { agentId: string; platform: string; upstream: string; env?: Record<string, string> },
): Promise<ManagedProcess> {
  const agent = spawnManaged(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'agent/src/main.ts')], {
    name: `agent-${spec.agentId}`,
    cwd: REPO_ROOT,
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      SLIPWAY_GATEWAY: stack.gatewayUrl,
      SLIPWAY_AGENT_TOKEN: await stack.agentToken(spec.agentId),
      SLIPWAY_AGENT_ID: spec.agentId,
      SLIPWAY_PLATFORM: spec.platform,
      SLIPWAY_UPSTREAM: spec.upstream,
      SLIPWAY_CA_CERT: stack.caPath,
      ...spec.env,
    },
  });
  try {
    await waitFor(() => stack.gateway.pool.list().some((l) => l.agentId === spec.agentId && l.description !== undefined), 30_000, `agent ${spec.agentId} registered`);
  } catch (err) {
    await agent.stop();
    throw err;
  }
  return agent;
}
