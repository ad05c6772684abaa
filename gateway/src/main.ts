import fs from 'node:fs';
import { createLogger } from '@slipway/proto';
import { loadConfig, GATEWAY_FLAGS } from './config.js';
import { Gateway } from './gateway.js';
import { TokenVerifier, loadVerificationKeys, parseBearer } from './tokenVerifier.js';
import { TokenIssuer, generateSigningKey, loadSigningKeys } from './tokenIssuer.js';
import { identityFromConfig } from './identity/identityFromConfig.js';
import { identityServices } from './identity/identityServices.js';
import { InstanceIdentityVerifier } from './instanceIdentityVerifier.js';
import { AgentAdmission } from './agentAdmission.js';
import { GatewayError } from './gatewayError.js';
import { auditSink } from './auditSink.js';
import { routingTableFromConfig } from './routing/routingTableFromConfig.js';
import { fleetFromConfig } from './fleet/fleetFromConfig.js';
import { toGatewayError } from './gatewayError.js';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(
    `Usage: slipway-gateway [flags]\nServes the CLI API, tunnels and agent links on one TLS port.\n` +
      `Every flag can also be given as the environment variable shown.\n` +
      `${Object.entries(GATEWAY_FLAGS).map(([f, v]) => `  ${f.padEnd(28)} ${v}`).join('\n')}\n`,
  );
  process.exit(0);
}

async function main(): Promise<void> {
  const config = loadConfig(process.env, argv);
  const log = createLogger('gateway', config.logLevel);
  // Build tokens are signed by the gateway itself; without a configured key (one replica, no
  // Redis) a fresh one is made up at start, and builds do not survive a restart anyway.
  // The first key of the ring signs; all of them verify (rotation with overlap).
  const ring = config.signingKeyPath ? await loadSigningKeys(config.signingKeyPath) : [generateSigningKey(`gateway-${config.gatewayId}`)];
  const jwks = await loadVerificationKeys(config.tokenJwksPath);
  const own = ring.map((k) => k.publicJwk).filter((k) => !jwks.keys.some((j) => j.kid === k.kid));
  const verifier = new TokenVerifier({ issuer: config.tokenIssuer, keys: [...jwks.keys, ...own] });
  const buildTokenIssuer = new TokenIssuer({ issuer: config.tokenIssuer, privateJwk: ring[0]!.privateJwk });
  const identity = identityFromConfig(config);
  const services = await identityServices({
    store: identity.store,
    issuer: buildTokenIssuer,
    verifyAdmin: (token) => verifier.verifyAdmin(token),
    publicKeys: () => ring.map((k) => k.publicJwk),
    log,
    revocationRefreshMs: config.revocationRefreshMs,
    maxTokenTtlSec: config.maxTokenTtlSec,
    oidcTokenTtlSec: config.oidcTokenTtlSec,
    oidcIssuerKeys: config.oidcCaPath ? { extraCa: fs.readFileSync(config.oidcCaPath) } : {},
  });
  const audit = auditSink(config.auditLogPath, process.stderr);
  const table = routingTableFromConfig(config);
  const fleet = fleetFromConfig(config, { table, log });
  const admission = new AgentAdmission({
    verifier: config.instanceIdentityCertsPath
      ? new InstanceIdentityVerifier({ certificates: readCertificates(config.instanceIdentityCertsPath), allowedAccounts: config.awsAccounts })
      : undefined,
    lookupInstance: (instanceId) => fleet.lookupInstance(instanceId),
    requireInstanceIdentity: config.requireInstanceIdentity,
  });
  const gateway = new Gateway({
    gatewayId: config.gatewayId,
    host: config.listenHost,
    port: config.listenPort,
    tls: { key: fs.readFileSync(config.tlsKeyPath), cert: fs.readFileSync(config.tlsCertPath) },
    auth: verifier,
    parseBearer,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    agentDescribeTimeoutMs: config.agentDescribeTimeoutMs,
    maxHeaderBytes: config.maxHeaderBytes,
    log,
    table,
    buildTokenIssuer,
    internalUrl: config.internalUrl,
    internalCa: config.internalCaPath ? fs.readFileSync(config.internalCaPath) : undefined,
    canProvision: (platform) => fleet.canProvision(platform),
    admission,
    identity: services,
    limits: config.limits,
    auditSink: (line) => audit.write(line),
    placement: {
      spillAfterMs: config.spillAfterMs,
      buildLeaseMs: config.buildLeaseMs,
      buildHeartbeatIntervalMs: config.buildHeartbeatIntervalMs,
      buildTokenTtlSec: config.buildTokenTtlSec,
      builderLeaseMs: config.builderLeaseMs,
    },
  });
  const address = await gateway.listen();
  log.info('gateway listening', { host: address.address, port: address.port, gatewayId: config.gatewayId });
  await fleet.start(gateway.metrics);
  let stopping = false;
  // The audit lines still queued are written before the process goes, however it goes.
  const exit = (code: number): never => {
    audit.flush();
    process.exit(code);
  };
  const shutdown = (signal: string): void => {
    if (stopping) exit(1);
    stopping = true;
    log.info('shutting down', { signal, graceMs: config.shutdownGraceMs });
    // The fleet first: its leadership is resigned at once, not held through the grace period.
    fleet
      .close()
      .catch((err: unknown) => log.warn('closing the fleet failed', { reason: toGatewayError(err).message }))
      .then(() => gateway.close(config.shutdownGraceMs))
      .then(() => Promise.all([table.close(), identity.store.close()]))
      .then(
        () => exit(0),
        () => exit(1),
      );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

function readCertificates(path: string): Record<string, string | string[]> {
  try {
    return JSON.parse(fs.readFileSync(path, 'utf8')) as Record<string, string | string[]>;
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `SLIPWAY_INSTANCE_IDENTITY_CERTS ${path}: expected JSON {"<region>": "<PEM>" or ["<PEM>", ...]}: ${(err as Error).message}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`slipway-gateway: ${toGatewayError(err).message}\n`);
  process.exit(2);
});
