// Docker's buildx as a real BuildKit client, in a private DOCKER_CONFIG.
//
// The docker CLI at /usr/local/bin (28.x) has no buildx plugin; Debian 13's docker-buildx is
// unpacked by scripts/install-deps.sh and linked into a per-test DOCKER_CONFIG, so builders a test
// creates (`docker buildx create --driver remote ...`) never touch the machine's own config.
import { accessSync, constants } from 'node:fs';
import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { HarnessError } from './harnessError.js';
import { runCommand, type CommandResult, type RunCommandOptions } from './processes.js';

export const DEBIAN13_ROOT = '/opt/debian13/root';
export const BUILDX_PLUGIN_PATH = `${DEBIAN13_ROOT}/usr/libexec/docker/cli-plugins/docker-buildx`;
/** Newest CLI first; Debian 12's 20.10 CLI also loads CLI plugins. */
export const DOCKER_CLI_CANDIDATES = ['/usr/local/bin/docker', '/usr/bin/docker'] as const;

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The docker CLI the harness runs, or null when none is installed. */
export function dockerCliPath(): string | null {
  return DOCKER_CLI_CANDIDATES.find(executable) ?? null;
}

/** Why buildx cannot run here, or null when it can; use as a test's skip reason. */
export function buildxUnavailableReason(): string | null {
  if (!executable(BUILDX_PLUGIN_PATH)) {
    return `buildx plugin missing at ${BUILDX_PLUGIN_PATH} (run scripts/install-deps.sh as root)`;
  }
  if (dockerCliPath() === null) {
    return `no docker CLI at ${DOCKER_CLI_CANDIDATES.join(' or ')}`;
  }
  return null;
}

export function buildxAvailable(): boolean {
  return buildxUnavailableReason() === null;
}

export type BuildxRunOptions = Omit<RunCommandOptions, 'env'> & {
  /** Added to (and overriding) the Buildx environment. */
  env?: NodeJS.ProcessEnv;
};

export interface Buildx {
  /** The private DOCKER_CONFIG folder (holds cli-plugins/docker-buildx and buildx state). */
  readonly dockerConfig: string;
  /** Environment for running the docker CLI with this config. */
  readonly env: NodeJS.ProcessEnv;
  /** The docker CLI binary used by run(). */
  readonly docker: string;
  /**
   * Runs `docker ...args` (e.g. ['buildx', 'build', ...]). Rejects with COMMAND_FAILED including
   * stdout and stderr on a non-zero exit unless `allowFailure`.
   */
  run(args: readonly string[], opts?: BuildxRunOptions): Promise<CommandResult>;
}

// Variables that would point the CLI at the machine's daemon, context or builder instead of the test's.
const INHERITED_DOCKER_VARS = ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_CONFIG', 'BUILDX_BUILDER', 'BUILDX_CONFIG'];

/** Creates `<dir>/docker-config` with the buildx plugin linked in. `dir` is created if needed. */
export async function prepareBuildx(dir: string): Promise<Buildx> {
  const reason = buildxUnavailableReason();
  if (reason !== null) throw new HarnessError('NOT_AVAILABLE', reason);
  const docker = dockerCliPath() as string;

  const dockerConfig = path.join(path.resolve(dir), 'docker-config');
  const pluginDir = path.join(dockerConfig, 'cli-plugins');
  await mkdir(pluginDir, { recursive: true });
  const pluginLink = path.join(pluginDir, 'docker-buildx');
  await symlink(BUILDX_PLUGIN_PATH, pluginLink).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });

  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of INHERITED_DOCKER_VARS) delete env[k];
  env.DOCKER_CONFIG = dockerConfig;
  env.DOCKER_CLI_HINTS = 'false';

  return {
    dockerConfig,
    env,
    docker,
    run(args, opts = {}) {
      return runCommand(docker, args, { ...opts, env: { ...env, ...opts.env } });
    },
  };
}
