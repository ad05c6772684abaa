import { createLogger, type Platform } from '@slipway/proto';
import { Gateway, type GatewayOptions, MemoryRoutingTable, TokenIssuer, TokenVerifier, makeTestPki, parseBearer, type RoutingTable, type TestPki } from '@slipway/gateway';
import { MemoryIdentityStore, identityServices, type IdentityStore } from '@slipway/gateway';
import { Agent, loadConfig as loadAgentConfig } from '@slipway/agent';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';

export interface StackAgentSpec {
  agentId: string;
  platform: Platform;
  upstream: string;
  maxStreams?: number;
  maxBuilds?: number;
  heartbeatTimeoutMs?: number;
  instanceId?: string;
  /** Gateways the agent dials (default this stack's); e.g. a load balancer in front of replicas. */
  gatewayUrls?: string[];
  /** Idle lanes the agent keeps per replica (default the agent's; 0: every stream rides the link). */
  lanes?: number;
}

export interface StackOptions {
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  port?: number;
  /** Shared routing table (e.g. Redis) for several stacks acting as replicas; default in-process. */
  table?: RoutingTable;
  /** Test PKI to share between replicas (same CA and token keys). */
  pki?: TestPki;
  gatewayId?: string;
  /** Instance identity checks for agents (default: admitted on their join token). */
  admission?: GatewayOptions['admission'];
  spillAfterMs?: number;
  builderLeaseMs?: number;
  buildLeaseMs?: number;
  /** Whether builds may wait for a fleet to bring a builder up (default: no, as with local agents). */
  canProvision?: (platform: Platform) => boolean;
  /** Serve the admin API (projects, tokens, trust policies) from an in-memory identity store; revoked tokens are refused. */
  identity?: boolean;
  /** With `identity`: the store to use (replicas share one); default a fresh in-memory store. */
  identityStore?: IdentityStore;
  /** With `identity`: exchange CI OIDC tokens, trusting issuers' HTTPS through this extra CA. */
  oidcCa?: string | Buffer;
  /** With `identity`: how long an issuer's JWKS is not refetched for another unknown kid (default the gateway's). */
  oidcUnknownKidCooldownMs?: number;
  /** Rate limits and stream quotas (default the gateway's). */
  limits?: GatewayOptions['limits'];
  /** Collects the audit log's lines. */
  auditLines?: string[];
}

export interface SlipwayStack {
  pki: TestPki;
  issuer: TokenIssuer;
  gateway: Gateway;
  gatewayUrl: string;
  port: number;
  caPath: string;
  agents: Map<string, Agent>;
  clientToken(project?: string, opts?: { scopes?: string[]; ttlSec?: number }): Promise<string>;
  /** An admin token (audience slipway-admin) for the admin API of a stack started with `identity`. */
  adminToken(subject?: string): Promise<string>;
  agentToken(agentId: string): Promise<string>;
  startAgent(spec: StackAgentSpec): Promise<Agent>;
  restartGateway(): Promise<void>;
  table: RoutingTable;
  close(): Promise<void>;
}

const quiet = process.env['SLIPWAY_TEST_VERBOSE'] === '1' ? 'debug' : 'silent';

// A gateway and agents in this process, on real TLS sockets on port 0, with a fresh test PKI.
export async function startStack(options: StackOptions = {}): Promise<SlipwayStack> {
  const ownPki = options.pki === undefined;
  const pki = options.pki ?? (await makeTestPki());
  const table = options.table ?? new MemoryRoutingTable();
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 10_000;
  const issuer = new TokenIssuer({ issuer: 'slipway-test', privateJwk: pki.signingKey.privateJwk });
  const verifier = new TokenVerifier({ issuer: 'slipway-test', keys: [pki.signingKey.publicJwk] });
  const identityLog = createLogger('identity', quiet);
  const identityStore = options.identity ? (options.identityStore ?? new MemoryIdentityStore()) : undefined;
  // One store and revocation list for the stack's life: they outlive restartGateway().
  const identity = identityStore
    ? await identityServices({
        store: identityStore,
        issuer,
        verifyAdmin: (token) => verifier.verifyAdmin(token),
        publicKeys: () => [pki.signingKey.publicJwk],
        log: identityLog,
        // Short, so a revocation made through one replica of a test reaches the others quickly.
        revocationRefreshMs: 250,
        maxTokenTtlSec: 90 * 86_400,
        oidcTokenTtlSec: 900,
        oidcIssuerKeys: {
          ...(options.oidcCa ? { extraCa: options.oidcCa } : {}),
          ...(options.oidcUnknownKidCooldownMs !== undefined ? { unknownKidCooldownMs: options.oidcUnknownKidCooldownMs } : {}),
        },
      })
    : undefined;
  const makeGateway = (port: number): Gateway =>
    new Gateway({
      gatewayId: options.gatewayId ?? 'gw-test',
      host: '127.0.0.1',
      port,
      tls: { key: pki.serverKeyPem, cert: pki.serverCertPem },
      auth: verifier,
      parseBearer,
      // Everything shares one process (and two cores) in these tests: a timeout much shorter than
      // production's 15 s would mistake a busy event loop for a dead peer.
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 1_000,
      heartbeatTimeoutMs,
      agentDescribeTimeoutMs: 5_000,
      maxHeaderBytes: 16 * 1024,
      log: createLogger('gateway', quiet),
      table,
      buildTokenIssuer: issuer,
      internalCa: Buffer.from(pki.caCertPem),
      admission: options.admission,
      canProvision: options.canProvision,
      identity,
      limits: options.limits,
      auditSink: options.auditLines ? (line) => void options.auditLines!.push(line) : undefined,
      placement: {
        spillAfterMs: options.spillAfterMs ?? 2_000,
        buildLeaseMs: options.buildLeaseMs ?? 30_000,
        buildHeartbeatIntervalMs: 1_000,
        buildTokenTtlSec: 3_600,
        builderLeaseMs: options.builderLeaseMs ?? heartbeatTimeoutMs,
      },
    });
  let gateway = makeGateway(options.port ?? 0);
  const address = await gateway.listen();
  const port = address.port;
  const caPath = path.join(pki.dir, 'ca.pem');
  await fs.writeFile(caPath, pki.caCertPem);
  const agents = new Map<string, Agent>();
  const stack: SlipwayStack = {
    pki,
    issuer,
    table,
    gateway,
    gatewayUrl: `https://127.0.0.1:${port}`,
    port,
    caPath,
    agents,
    clientToken: (project = 'demo', opts = {}) =>
      issuer.issueClientToken({ project, subject: 'tester', scopes: opts.scopes ?? ['build'], ttlSec: opts.ttlSec ?? 3600 }),
    adminToken: (subject = 'test-admin') => issuer.issueAdminToken(subject, 3600),
    agentToken: (agentId) => issuer.issueAgentToken({ agentId, fleet: 'test', ttlSec: 3600 }),
    async startAgent(spec) {
      const config = loadAgentConfig(
        {
          SLIPWAY_GATEWAY: (spec.gatewayUrls ?? [stack.gatewayUrl]).join(','),
          SLIPWAY_AGENT_TOKEN: await stack.agentToken(spec.agentId),
          SLIPWAY_AGENT_ID: spec.agentId,
          SLIPWAY_PLATFORM: spec.platform,
          SLIPWAY_UPSTREAM: spec.upstream,
          SLIPWAY_CA_CERT: caPath,
          SLIPWAY_MAX_STREAMS: String(spec.maxStreams ?? 1024),
          SLIPWAY_MAX_BUILDS: String(spec.maxBuilds ?? 64),
          ...(spec.instanceId ? { SLIPWAY_INSTANCE_ID: spec.instanceId } : {}),
          SLIPWAY_HEARTBEAT_TIMEOUT_MS: String(spec.heartbeatTimeoutMs ?? 10_000),
          SLIPWAY_RECONNECT_BASE_MS: '50',
          SLIPWAY_RECONNECT_MAX_MS: '500',
          SLIPWAY_DRAIN_GRACE_MS: '2000',
          ...(spec.lanes !== undefined ? { SLIPWAY_LANES: String(spec.lanes) } : {}),
        },
        [],
      );
      const agent = new Agent(config, createLogger(`agent-${spec.agentId}`, quiet));
      agents.set(spec.agentId, agent);
      const connected = once(agent, 'connected');
      agent.start();
      await connected;
      // Registered means placeable: the routing table knows it with a live link (on whichever replica).
      await waitForAsync(
        async () => ((await table.getBuilder(spec.agentId, spec.platform))?.gatewayIds.length ?? 0) > 0,
        10_000,
        `agent ${spec.agentId} registered in the routing table`,
      );
      return agent;
    },
    async restartGateway() {
      await stack.gateway.close(0);
      gateway = makeGateway(port);
      stack.gateway = gateway;
      await gateway.listen();
    },
    async close() {
      await Promise.all([...agents.values()].map((a) => a.close()));
      await stack.gateway.close(0);
      if (options.table === undefined) await table.close();
      if (ownPki) await pki.cleanup();
    },
  };
  return stack;
}

export async function waitForAsync(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
