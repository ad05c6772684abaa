// The Slipway side of the build bench, each part in its own process as in production: a gateway
// and an agent in dockerd mode in front of the bench's dockerd. `slipway build` runs as a client of
// it with `cliEnv`.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { NODE_FLAGS } from '@slipway/cli';
import { ensureDevPki, TokenIssuer } from '@slipway/gateway';
import { BenchError } from './benchError.js';
import { BenchProcess } from './benchProcess.js';
import { freeLoopbackPort } from './freePort.js';
import { fetchGatewayMetrics, metricTotal } from './gatewayMetrics.js';

export const BUILD_PLATFORM = 'linux/amd64';
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

export interface BuildBenchStack {
  gateway: BenchProcess;
  agent: BenchProcess;
  /** What `slipway build` needs to reach the builder. */
  cliEnv: Record<string, string>;
  close(): Promise<void>;
}

export async function startBuildBenchStack(repoRoot: string, dir: string, dockerSocket: string, baseEnv: Record<string, string>, echo: boolean): Promise<BuildBenchStack> {
  const started: BenchProcess[] = [];
  const spawnNode = (name: string, args: string[], env: Record<string, string>): BenchProcess => {
    const proc = new BenchProcess({ name, command: process.execPath, args, cwd: repoRoot, env: { ...baseEnv, ...env }, echo });
    started.push(proc);
    return proc;
  };
  const close = async (): Promise<void> => {
    for (const proc of [...started].reverse()) await proc.stop(STOP_GRACE_MS);
  };
  try {
    const pki = await ensureDevPki(path.join(dir, 'pki'));
    const ca = await readFile(pki.caCertPath);
    const issuer = new TokenIssuer({ issuer: 'slipway', privateJwk: pki.signingKey.privateJwk });
    const clientToken = await issuer.issueClientToken({ project: 'bench', subject: 'bench', scopes: ['build'], ttlSec: 24 * 3600 });
    const agentTokenPath = path.join(dir, 'agent.token');
    await writeFile(agentTokenPath, await issuer.issueAgentToken({ agentId: 'bench-builder', fleet: 'bench', ttlSec: 24 * 3600 }), { mode: 0o600 });
    const port = await freeLoopbackPort();
    const gatewayUrl = `https://127.0.0.1:${port}`;
    const gateway = spawnNode('gateway', [...NODE_FLAGS, '--import', 'tsx', 'gateway/src/main.ts'], {
      SLIPWAY_LISTEN: `127.0.0.1:${port}`,
      SLIPWAY_TLS_CERT: pki.serverCertPath,
      SLIPWAY_TLS_KEY: pki.serverKeyPath,
      SLIPWAY_TOKEN_JWKS: pki.jwksPath,
      SLIPWAY_GATEWAY_ID: 'bench-gateway',
      SLIPWAY_SHUTDOWN_GRACE_MS: '0',
      SLIPWAY_LOG_LEVEL: 'warn',
    });
    const agent = spawnNode('agent', [...NODE_FLAGS, '--import', 'tsx', 'agent/src/main.ts'], {
      SLIPWAY_GATEWAY: gatewayUrl,
      SLIPWAY_AGENT_TOKEN_FILE: agentTokenPath,
      SLIPWAY_AGENT_ID: 'bench-builder',
      SLIPWAY_PLATFORM: BUILD_PLATFORM,
      SLIPWAY_UPSTREAM: `dockerd:unix://${dockerSocket}`,
      SLIPWAY_CA_CERT: pki.caCertPath,
      SLIPWAY_RECONNECT_BASE_MS: '100',
      SLIPWAY_RECONNECT_MAX_MS: '500',
      SLIPWAY_DRAIN_GRACE_MS: '0',
      SLIPWAY_LOG_LEVEL: 'warn',
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    let last = 'no answer yet';
    for (;;) {
      const dead = started.find((p) => p.exitStatus !== undefined);
      if (dead) throw new BenchError('PROCESS_FAILED', `${dead.name} exited during start-up\n${dead.describeExit()}`);
      try {
        const text = await fetchGatewayMetrics(gatewayUrl, ca, 2_000);
        if (metricTotal(text, 'slipway_agents_connected', (l) => l.includes(`platform="${BUILD_PLATFORM}"`) && l.includes('state="ready"')) >= 1) break;
        last = 'gateway is up, agent not registered yet';
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new BenchError('TIMEOUT', `the agent did not register within ${START_TIMEOUT_MS} ms (last: ${last})`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return {
      gateway,
      agent,
      cliEnv: { SLIPWAY_GATEWAY: gatewayUrl, SLIPWAY_TOKEN: clientToken, SLIPWAY_PROJECT: 'bench', SLIPWAY_CA_CERT: pki.caCertPath },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
