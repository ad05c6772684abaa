import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { createLogger, type Logger } from '@slipway/proto';
import {
  Gateway,
  MemoryIdentityStore,
  identityServices,
  MemoryRoutingTable,
  TokenIssuer,
  TokenVerifier,
  ensureDevPki,
  parseBearer,
  type DevPki,
} from '@slipway/gateway';
import { Agent, loadConfig as loadAgentConfig } from '@slipway/agent';
import type { DevLauncherConfig } from './config.js';
import { localGatewayUrl } from './config.js';
import { renderEnvFile, writeSecretFile } from './devEnvFile.js';
import { DevLauncherError } from './devLauncherError.js';

/** Issuer written into the dev tokens; the gateway program's default, so it accepts them too. */
export const DEV_TOKEN_ISSUER = 'slipway';
export const DEV_PROJECT = 'dev';
/** The docker-compose stack's two agents, one per platform label (docker-compose.yml). */
export const COMPOSE_AGENT_IDS = ['compose-amd64', 'compose-arm64'] as const;
const TOKEN_TTL_SEC = 30 * 24 * 60 * 60;
// Short on purpose: this is a developer's machine, and Ctrl-C should not hang for a minute.
const SHUTDOWN_GRACE_MS = 10_000;
const AGENT_REGISTER_TIMEOUT_MS = 15_000;
const GATEWAY_HEARTBEAT_INTERVAL_MS = 5_000;
const GATEWAY_HEARTBEAT_TIMEOUT_MS = 15_000;

export const DevFiles = {
  pki: 'pki',
  env: 'dev.env',
  /** `<agent id>.token` for each of COMPOSE_AGENT_IDS. */
  composeAgentTokenSuffix: '.token',
  identity: 'identity.json',
} as const;

export interface DevStack {
  gatewayUrl: string;
  agentId: string;
  /** False when the agent had not registered within the wait; it keeps trying in the background. */
  agentRegistered: boolean;
  pki: DevPki;
  envFile: string;
  composeAgentTokenFiles: string[];
  /** Drains the agent, then closes the gateway. Idempotent. */
  stop(): Promise<void>;
}

/** Agent ids travel in headers; a host name may hold characters they do not allow. */
export function localAgentId(hostname: string): string {
  const cleaned = hostname.replace(/[^A-Za-z0-9._:@-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return `local-${cleaned || 'host'}`.slice(0, 128);
}

/**
 * Starts the gateway and one agent in this process with the development PKI in `config.dir`,
 * writes `dev.env` for the CLI once the agent has registered (or the wait for it ran out).
 */
export async function startDevStack(config: DevLauncherConfig, log: Logger): Promise<DevStack> {
  const hostname = os.hostname();
  const pki = await ensureDevPki(path.join(config.dir, DevFiles.pki), { hostname: config.tlsName });
  const created = Object.entries(pki.created).filter(([, v]) => v).map(([k]) => k);
  log.info('development PKI ready', { dir: pki.dir, created: created.join(',') || 'nothing (reused)' });

  const issuer = new TokenIssuer({ issuer: DEV_TOKEN_ISSUER, privateJwk: pki.signingKey.privateJwk });
  const verifier = new TokenVerifier({ issuer: DEV_TOKEN_ISSUER, keys: [pki.signingKey.publicJwk] });
  const agentId = localAgentId(hostname);
  const clientToken = await issuer.issueClientToken({
    project: DEV_PROJECT,
    subject: `dev@${hostname}`.slice(0, 200),
    scopes: ['build'],
    ttlSec: TOKEN_TTL_SEC,
  });
  const agentToken = await issuer.issueAgentToken({ agentId, fleet: 'local', ttlSec: TOKEN_TTL_SEC });
  const adminToken = await issuer.issueAdminToken(`admin@${hostname}`.slice(0, 200), TOKEN_TTL_SEC);
  // Projects, tokens and trust policies made through the admin API survive restarts here.
  const identityStore = new MemoryIdentityStore(path.join(config.dir, DevFiles.identity));
  const identity = await identityServices({
    store: identityStore,
    issuer,
    verifyAdmin: (token) => verifier.verifyAdmin(token),
    publicKeys: () => [pki.signingKey.publicJwk],
    log,
    revocationRefreshMs: 5_000,
    maxTokenTtlSec: 90 * 86_400,
    oidcTokenTtlSec: 900,
  });
  // The docker-compose stack mounts this directory; its agents join with these tokens.
  const composeAgentTokenFiles: string[] = [];
  for (const composeAgentId of COMPOSE_AGENT_IDS) {
    const file = path.join(config.dir, composeAgentId + DevFiles.composeAgentTokenSuffix);
    await writeSecretFile(file, `${await issuer.issueAgentToken({ agentId: composeAgentId, fleet: 'compose', ttlSec: TOKEN_TTL_SEC })}\n`);
    composeAgentTokenFiles.push(file);
  }

  const gateway = new Gateway({
    gatewayId: `local-${hostname}`.slice(0, 128),
    host: config.listenHost,
    port: config.listenPort,
    tls: { key: pki.serverKeyPem, cert: pki.serverCertPem },
    auth: verifier,
    parseBearer,
    heartbeatIntervalMs: GATEWAY_HEARTBEAT_INTERVAL_MS,
    heartbeatTimeoutMs: GATEWAY_HEARTBEAT_TIMEOUT_MS,
    agentDescribeTimeoutMs: 10_000,
    maxHeaderBytes: 16 * 1024,
    log: createLogger('gateway', config.logLevel),
    // One process, one replica: the in-process routing table; build tokens signed with the dev key.
    table: new MemoryRoutingTable(),
    identity,
    buildTokenIssuer: issuer,
    placement: {
      spillAfterMs: 30_000,
      buildLeaseMs: 30_000,
      buildHeartbeatIntervalMs: 5_000,
      buildTokenTtlSec: 3_600,
      builderLeaseMs: GATEWAY_HEARTBEAT_TIMEOUT_MS,
    },
  });
  let address;
  try {
    address = await gateway.listen();
  } catch (err) {
    await gateway.close(0).catch(() => {});
    const reason = (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'the port is in use (pick another with --listen)' : (err as Error).message;
    throw new DevLauncherError('STARTUP_FAILED', `cannot listen on ${config.listenHost}:${config.listenPort}: ${reason}`, { cause: err });
  }
  const gatewayUrl = localGatewayUrl(config.listenHost, address.port);
  log.info('gateway listening', { url: gatewayUrl, host: address.address, port: address.port });

  let agent: Agent;
  try {
    const agentConfig = loadAgentConfig(
      {
        SLIPWAY_GATEWAY: gatewayUrl,
        SLIPWAY_AGENT_TOKEN: agentToken,
        SLIPWAY_AGENT_ID: agentId,
        SLIPWAY_PLATFORM: config.platform,
        SLIPWAY_UPSTREAM: config.upstream,
        SLIPWAY_CA_CERT: pki.caCertPath,
        SLIPWAY_AGENT_LABELS: 'launcher=dev',
        SLIPWAY_DRAIN_GRACE_MS: String(SHUTDOWN_GRACE_MS),
        // One person at a terminal: Ctrl-C means stop now, not wait for a build's next connection.
        SLIPWAY_DRAIN_QUIET_MS: '0',
        SLIPWAY_LOG_LEVEL: config.logLevel,
      },
      [],
    );
    agent = new Agent(agentConfig, createLogger('agent', config.logLevel));
  } catch (err) {
    await gateway.close(0);
    throw err;
  }
  agent.start();
  const agentRegistered = await waitForRegistration(gateway, agent, agentId);
  if (!agentRegistered) {
    log.warn('the local agent has not registered yet; it keeps retrying', { agentId, waitedMs: AGENT_REGISTER_TIMEOUT_MS });
  }

  const envFile = path.join(config.dir, DevFiles.env);
  await writeSecretFile(
    envFile,
    renderEnvFile(
      [
        'Written by `npm start` (deploy/local/start.ts) for the Slipway CLI. Load it with:',
        `  source ${envFile}`,
        `The token is for project '${DEV_PROJECT}', scope build, valid 30 days; every start mints a new one.`,
        'SLIPWAY_ADMIN_TOKEN drives the admin API (slipway projects|tokens|trust).',
      ],
      {
        SLIPWAY_GATEWAY: gatewayUrl,
        SLIPWAY_TOKEN: clientToken,
        SLIPWAY_ADMIN_TOKEN: adminToken,
        SLIPWAY_PROJECT: DEV_PROJECT,
        SLIPWAY_CA_CERT: pki.caCertPath,
      },
    ),
  );

  let stopping: Promise<void> | undefined;
  return {
    gatewayUrl,
    agentId,
    agentRegistered,
    pki,
    envFile,
    composeAgentTokenFiles,
    stop() {
      stopping ??= (async () => {
        await agent.drain(SHUTDOWN_GRACE_MS);
        await gateway.close(SHUTDOWN_GRACE_MS);
      })();
      return stopping;
    },
  };
}

// The pool has no event for "registered", so it is looked at after each connect of the agent
// and on a short tick until the describe call has answered.
async function waitForRegistration(gateway: Gateway, agent: Agent, agentId: string): Promise<boolean> {
  const registered = (): boolean => gateway.pool.list().some((l) => l.agentId === agentId && l.description !== undefined);
  const deadline = Date.now() + AGENT_REGISTER_TIMEOUT_MS;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), AGENT_REGISTER_TIMEOUT_MS);
  try {
    await once(agent, 'connected', { signal: abort.signal });
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
  while (!registered()) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}
