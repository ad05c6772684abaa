import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnManaged, type ManagedProcess } from './processes.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SLIPWAY_BIN = path.join(REPO_ROOT, 'cli/bin/slipway.mjs');

// Runs the real `slipway proxy` program, as a user would, and waits until it serves.
export async function startSlipwayProxy(options: {
  gatewayUrl: string;
  token: string;
  caPath: string;
  platform: string;
  socketPath: string;
  transport?: 'auto' | 'h2' | 'websocket';
  env?: Record<string, string>;
}): Promise<ManagedProcess> {
  const proc = spawnManaged(
    process.execPath,
    [SLIPWAY_BIN, 'proxy', '--platform', options.platform, '--listen', `unix://${options.socketPath}`, '--transport', options.transport ?? 'auto'],
    {
      name: 'slipway-proxy',
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        SLIPWAY_GATEWAY: options.gatewayUrl,
        SLIPWAY_TOKEN: options.token,
        SLIPWAY_CA_CERT: options.caPath,
        SLIPWAY_LOG_LEVEL: 'info',
        ...options.env,
      },
    },
  );
  await proc.waitForOutput(/serving .* builders at/, 30_000);
  return proc;
}
