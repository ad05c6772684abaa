import fs from 'node:fs';
import { createLogger } from '@slipway/proto';
import { TunnelClient } from '@slipway/cli';
import type { SlipwayStack } from './slipwayStack.js';

// The CLI's tunnel client pointed at a test stack, trusting its CA, with no proxy in the way.
// `gatewayUrl` reaches the stack's gateway some other way (a relay in front of it).
export async function tunnelClientFor(
  stack: SlipwayStack,
  options: { transport?: 'auto' | 'h2' | 'websocket'; project?: string; ca?: Buffer; env?: Record<string, string>; gatewayUrl?: string } = {},
): Promise<TunnelClient> {
  return new TunnelClient({
    gatewayUrl: new URL(options.gatewayUrl ?? stack.gatewayUrl),
    token: await stack.clientToken(options.project ?? 'demo'),
    project: options.project,
    ca: options.ca ?? fs.readFileSync(stack.caPath),
    transport: options.transport ?? 'h2',
    env: options.env ?? {},
    connectTimeoutMs: 5_000,
    log: createLogger('test-cli', process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent'),
  });
}
