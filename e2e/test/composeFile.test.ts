// docker-compose.yml must stay a valid Compose file wired as documented. Compose itself is the
// judge: `config` parses, validates against its schema and resolves the file.
import assert from 'node:assert/strict';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { loadConfig as loadGatewayConfig } from '@slipway/gateway';
import { DEV_PKI_FILES } from '../../gateway/src/devPki.js';
import { DEBIAN13_ROOT, runCommand } from '../src/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COMPOSE_FILE = path.join(REPO_ROOT, 'docker-compose.yml');
// The standalone Compose v2 binary that scripts/install-deps.sh unpacks.
const COMPOSE = path.join(DEBIAN13_ROOT, 'usr/libexec/docker/cli-plugins/docker-compose');

async function composeMissingReason(): Promise<string | undefined> {
  try {
    await access(COMPOSE, constants.X_OK);
    return undefined;
  } catch {
    return `${COMPOSE} is missing; run scripts/install-deps.sh as root to unpack Docker Compose`;
  }
}

interface ComposeService {
  image?: string;
  privileged?: boolean;
  command?: string[];
  environment?: Record<string, string>;
  ports?: Array<{ target: number; published: string }>;
  build?: { dockerfile?: string };
  volumes?: Array<{ type: string; source?: string; target: string }>;
}

// Compose reads variables such as SLIPWAY_UID from the environment; the test must not depend on them.
const ENV = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/tmp' };

describe('docker-compose.yml', async () => {
  const skip = await composeMissingReason();

  it('passes `docker-compose config -q`', { skip }, async () => {
    const result = await runCommand(COMPOSE, ['-f', COMPOSE_FILE, 'config', '-q'], { cwd: REPO_ROOT, env: ENV, allowFailure: true, timeoutMs: 60_000 });
    assert.equal(result.code, 0, `docker-compose config -q failed:\n${result.stderr}${result.stdout}`);
    assert.equal(result.stderr.trim(), '', 'compose printed warnings');
  });

  it('has redis, a gateway, two agents (amd64 and arm64) and a privileged buildkitd sharing its socket with the agents', { skip }, async () => {
    const result = await runCommand(COMPOSE, ['-f', COMPOSE_FILE, 'config', '--format', 'json'], { cwd: REPO_ROOT, env: ENV, timeoutMs: 60_000 });
    const services = (JSON.parse(result.stdout) as { services: Record<string, ComposeService> }).services;
    assert.deepEqual(Object.keys(services).sort(), ['agent-amd64', 'agent-arm64', 'buildkitd', 'gateway', 'redis']);

    const { buildkitd, gateway, redis } = services as Record<string, ComposeService>;
    assert.equal(buildkitd!.privileged, true);
    assert.equal(buildkitd!.image, 'moby/buildkit:v0.13.2');
    assert.deepEqual(buildkitd!.command?.slice(0, 2), ['--addr', 'unix:///run/buildkit/buildkitd.sock']);
    assert.match(redis!.image ?? '', /^redis:7/);

    assert.equal(gateway!.build?.dockerfile, 'deploy/docker/Dockerfile.gateway');
    assert.deepEqual(gateway!.ports?.map((p) => [p.published, p.target]), [['8443', 443]]);
    assert.equal(gateway!.environment?.['SLIPWAY_REDIS_URL'], 'redis://redis:6379');
    // With Redis the gateway requires the signing key: the dev PKI's private JWKS, which npm start writes.
    assert.equal(gateway!.environment?.['SLIPWAY_SIGNING_KEY'], `/etc/slipway/${DEV_PKI_FILES.jwksPrivate}`);
    for (const name of ['SLIPWAY_TLS_CERT', 'SLIPWAY_TLS_KEY', 'SLIPWAY_TOKEN_JWKS', 'SLIPWAY_SIGNING_KEY']) {
      const target = gateway!.environment?.[name];
      const mount = gateway!.volumes?.find((v) => v.target === target);
      assert.ok(mount?.source?.startsWith(path.join(REPO_ROOT, '.slipway', 'pki')), `${name}=${target} is not mounted from ./.slipway/pki`);
      assert.ok(Object.values(DEV_PKI_FILES).includes(path.basename(mount!.source!) as never), `${mount!.source} is not a file the dev PKI writes`);
    }
    // The gateway program accepts that environment (Redis, signing key, ...).
    const config = loadGatewayConfig(gateway!.environment ?? {}, []);
    assert.equal(config.redis?.url, 'redis://redis:6379');

    const socketVolume = (s: ComposeService): string | undefined => s.volumes?.find((v) => v.target === '/run/buildkit' && v.type === 'volume')?.source;
    assert.ok(socketVolume(buildkitd!), 'buildkitd has no named volume at /run/buildkit');
    for (const arch of ['amd64', 'arm64']) {
      const agent = services[`agent-${arch}`]!;
      assert.equal(agent.build?.dockerfile, 'deploy/docker/Dockerfile.agent');
      assert.equal(agent.environment?.['SLIPWAY_GATEWAY'], 'https://gateway:443');
      assert.equal(agent.environment?.['SLIPWAY_UPSTREAM'], 'buildkitd:unix:///run/buildkit/buildkitd.sock');
      assert.equal(agent.environment?.['SLIPWAY_PLATFORM'], `linux/${arch}`);
      assert.match(agent.environment?.['SLIPWAY_AGENT_LABELS'] ?? '', new RegExp(`(^|,)arch=${arch}(,|$)`));
      // The join token npm start mints for this agent id (deploy/local/devStack.ts).
      const agentId = agent.environment?.['SLIPWAY_AGENT_ID'];
      assert.equal(agentId, `compose-${arch}`);
      const tokenMount = agent.volumes?.find((v) => v.target === agent.environment?.['SLIPWAY_AGENT_TOKEN_FILE'] && v.type === 'bind');
      assert.equal(tokenMount?.source, path.join(REPO_ROOT, '.slipway', `${agentId}.token`));
      assert.ok(agent.volumes?.some((v) => v.target === agent.environment?.['SLIPWAY_CA_CERT'] && v.type === 'bind'), 'the CA is not mounted');
      assert.equal(socketVolume(agent), socketVolume(buildkitd!), `agent-${arch} does not mount the volume holding buildkitd.sock`);
    }
  });
});
