// The system under test, every part in its own process as in production: the upstream (a raw
// byte server standing in for BuildKit), a gateway, an agent dialing it, and one `slipway proxy`
// per transport serving a unix socket, exactly what docker/buildx would connect to. Slipway's own
// programs start with the node flags their launchers give them (cli/src/nodeFlags.ts); the
// upstream, like the bench client, is the bench's and runs on node's defaults.
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { NODE_FLAGS } from '@slipway/cli';
import { ensureDevPki, TokenIssuer } from '@slipway/gateway';
import { BenchError } from './benchError.js';
import type { BenchEndpoint } from './benchEndpoint.js';
import { BenchProcess } from './benchProcess.js';
import { freeLoopbackPort } from './freePort.js';
import { fetchGatewayMetrics, metricTotal } from './gatewayMetrics.js';

export const TargetNames = ['direct', 'h2', 'websocket'] as const;
export type TargetName = (typeof TargetNames)[number];

export const PLATFORM = 'linux/amd64';
const PROJECT = 'bench';
const AGENT_ID = 'bench-agent';
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

export interface BenchTarget {
  name: TargetName;
  endpoint: BenchEndpoint;
}

export type StackRole = 'upstream' | 'gateway' | 'agent' | 'proxyH2' | 'proxyWebsocket';

export interface BenchStack {
  upstreamAddress: string;
  gatewayUrl: string;
  targets: BenchTarget[];
  processes: Map<StackRole, BenchProcess>;
  /** Prometheus text from the gateway. */
  metrics(): Promise<string>;
  /** The first process of the stack that is no longer running, if any. */
  deadProcess(): BenchProcess | undefined;
  close(): Promise<void>;
}

export interface BenchStackOptions {
  repoRoot: string;
  /** Scratch directory: PKI, token file, proxy sockets. */
  dir: string;
  logLevel: string;
  /** Print the children's output as it comes. */
  echo: boolean;
  /** Environment every child starts from (see BenchConfig.childBaseEnv). */
  baseEnv: Record<string, string>;
}

export async function startBenchStack(options: BenchStackOptions): Promise<BenchStack> {
  const processes = new Map<StackRole, BenchProcess>();
  const spawnNode = (role: StackRole, name: string, args: string[], env: Record<string, string>): BenchProcess => {
    const proc = new BenchProcess({ name, command: process.execPath, args, cwd: options.repoRoot, env: { ...options.baseEnv, ...env }, echo: options.echo });
    processes.set(role, proc);
    return proc;
  };
  const stopAll = async (): Promise<void> => {
    // Clients of the gateway first, so nothing reports the gateway's exit as a failure.
    for (const role of ['proxyH2', 'proxyWebsocket', 'agent', 'gateway', 'upstream'] as const) await processes.get(role)?.stop(STOP_GRACE_MS);
  };
  try {
    const upstream = spawnNode('upstream', 'upstream', ['--import', 'tsx', 'loadtest/src/upstreamMain.ts'], {});
    const ready = await upstream.waitForLine(/^UPSTREAM_READY (\{.*\})$/, START_TIMEOUT_MS);
    const upstreamPort = (JSON.parse(ready[1]!) as { port: number }).port;

    const pki = await ensureDevPki(path.join(options.dir, 'pki'));
    const ca = await readFile(pki.caCertPath);
    const issuer = new TokenIssuer({ issuer: 'slipway', privateJwk: pki.signingKey.privateJwk });
    const clientToken = await issuer.issueClientToken({ project: PROJECT, subject: 'bench', scopes: ['build'], ttlSec: 24 * 3600 });
    const agentTokenPath = path.join(options.dir, 'agent.token');
    await writeFile(agentTokenPath, await issuer.issueAgentToken({ agentId: AGENT_ID, fleet: 'bench', ttlSec: 24 * 3600 }), { mode: 0o600 });
    await chmod(agentTokenPath, 0o600);

    const port = await freeLoopbackPort();
    const gatewayUrl = `https://127.0.0.1:${port}`;
    const gateway = spawnNode('gateway', 'gateway', [...NODE_FLAGS, '--import', 'tsx', 'gateway/src/main.ts'], {
      SLIPWAY_LISTEN: `127.0.0.1:${port}`,
      SLIPWAY_TLS_CERT: pki.serverCertPath,
      SLIPWAY_TLS_KEY: pki.serverKeyPath,
      SLIPWAY_TOKEN_JWKS: pki.jwksPath,
      SLIPWAY_GATEWAY_ID: 'bench-gateway',
      SLIPWAY_SHUTDOWN_GRACE_MS: '0',
      // The bench measures the data path: rounds of 200 opens on one token, thousands in a row,
      // are what the abuse limits exist to refuse, so they are lifted here.
      SLIPWAY_RATE_AUTH_PER_ADDRESS: '1000000/1000000',
      SLIPWAY_RATE_OPENS_PER_TOKEN: '1000000/1000000',
      SLIPWAY_RATE_OPENS_PER_ADDRESS: '1000000/1000000',
      SLIPWAY_LOG_LEVEL: options.logLevel,
    });
    const agent = spawnNode('agent', 'agent', [...NODE_FLAGS, '--import', 'tsx', 'agent/src/main.ts'], {
      SLIPWAY_GATEWAY: gatewayUrl,
      SLIPWAY_AGENT_TOKEN_FILE: agentTokenPath,
      SLIPWAY_AGENT_ID: AGENT_ID,
      SLIPWAY_PLATFORM: PLATFORM,
      SLIPWAY_UPSTREAM: `buildkitd:tcp://127.0.0.1:${upstreamPort}`,
      SLIPWAY_CA_CERT: pki.caCertPath,
      // The gateway may still be starting when the agent first dials.
      SLIPWAY_RECONNECT_BASE_MS: '100',
      SLIPWAY_RECONNECT_MAX_MS: '500',
      SLIPWAY_DRAIN_GRACE_MS: '0',
      SLIPWAY_LOG_LEVEL: options.logLevel,
    });
    await waitForAgent(gatewayUrl, ca, [gateway, agent]);

    const proxies: Array<[StackRole, TargetName, string]> = [
      ['proxyH2', 'h2', path.join(options.dir, 'h2.sock')],
      ['proxyWebsocket', 'websocket', path.join(options.dir, 'ws.sock')],
    ];
    for (const [role, transport, socketPath] of proxies) {
      const proxy = spawnNode(
        role,
        `proxy-${transport}`,
        [...NODE_FLAGS, 'cli/bin/slipway.mjs', 'proxy', '--platform', PLATFORM, '--listen', `unix://${socketPath}`, '--transport', transport],
        { SLIPWAY_GATEWAY: gatewayUrl, SLIPWAY_TOKEN: clientToken, SLIPWAY_PROJECT: PROJECT, SLIPWAY_CA_CERT: pki.caCertPath, SLIPWAY_LOG_LEVEL: options.logLevel },
      );
      await proxy.waitForLine(/serving .* builders at unix:\/\//, START_TIMEOUT_MS);
    }

    return {
      upstreamAddress: `tcp://127.0.0.1:${upstreamPort}`,
      gatewayUrl,
      targets: [
        { name: 'direct', endpoint: { kind: 'tcp', host: '127.0.0.1', port: upstreamPort } },
        ...proxies.map(([, name, socketPath]): BenchTarget => ({ name, endpoint: { kind: 'unix', path: socketPath } })),
      ],
      processes,
      metrics: () => fetchGatewayMetrics(gatewayUrl, ca),
      deadProcess: () => [...processes.values()].find((p) => p.exitStatus !== undefined),
      close: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

// The agent is usable once the gateway lists it as ready for the platform.
async function waitForAgent(gatewayUrl: string, ca: Buffer, watched: BenchProcess[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const dead = watched.find((p) => p.exitStatus !== undefined);
    if (dead) throw new BenchError('PROCESS_FAILED', `${dead.name} exited during start-up\n${dead.describeExit()}`);
    try {
      const text = await fetchGatewayMetrics(gatewayUrl, ca, 2_000);
      const ready = metricTotal(text, 'slipway_agents_connected', (l) => l.includes(`platform="${PLATFORM}"`) && l.includes('state="ready"'));
      if (ready >= 1) return;
      last = 'gateway is up, agent not registered yet';
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new BenchError(
    'TIMEOUT',
    `the agent did not register with the gateway within ${START_TIMEOUT_MS} ms (last: ${last})\n${watched.map((p) => p.describeExit()).join('\n')}`,
  );
}
