import type { SlipwayStack } from './slipwayStack.js';

/**
 * The environment a `slipway` command run by a test gets: only PATH from this process, a HOME of
 * the test's own (so no credentials, Docker config or transport memory leak in from the machine),
 * and the stack's gateway, a client token for `project` and the CA to trust.
 */
export async function slipwayClientEnv(stack: SlipwayStack, home: string, project = 'demo'): Promise<NodeJS.ProcessEnv> {
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: home,
    SLIPWAY_GATEWAY: stack.gatewayUrl,
    SLIPWAY_TOKEN: await stack.clientToken(project),
    SLIPWAY_CA_CERT: stack.caPath,
  };
}
