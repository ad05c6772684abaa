// Where configure-docker and the proxy daemon keep things: Docker's own configuration (found the
// way the Docker CLI and buildx find it) and the user's Slipway directory.
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { Env, Platform } from '@slipway/proto';

/** The buildx builder configure-docker creates; also the Docker CLI plugin's name (docker slipway). */
export const BUILDER_NAME = 'slipway';

/** The Docker Engine the environment names, as the docker CLI finds it: DOCKER_HOST, else the default socket. */
export function dockerHostOf(env: Env): string {
  return env['DOCKER_HOST'] || 'unix:///var/run/docker.sock';
}

/** Every platform gets a node and a socket, the machine's own first (buildx builds for the first node's platform by default). */
export function platformsNativeFirst(arch: string = process.arch): Platform[] {
  return arch === 'arm64' ? ['linux/arm64', 'linux/amd64'] : ['linux/amd64', 'linux/arm64'];
}

export interface DaemonPaths {
  /** <slipway dir>/docker, mode 0700: sockets, state, log and configure-docker's record. */
  dir: string;
  sockets: Record<Platform, string>;
  /** JSON the supervisor keeps up to date: its pid, its worker's, when it started. */
  stateFile: string;
  logFile: string;
}

export interface DockerLocations {
  /** $DOCKER_CONFIG, else ~/.docker. */
  dockerConfigDir: string;
  configJson: string;
  /** $BUILDX_CONFIG, else <docker config>/buildx (as buildx's confutil decides). */
  buildxDir: string;
  instanceFile: string;
  currentFile: string;
  pluginFile: string;
  daemon: DaemonPaths;
  /** What configure-docker changed in this Docker configuration and what was there before, for --uninstall. */
  recordFile: string;
}

export function daemonPaths(slipwayDir: string): DaemonPaths {
  const dir = path.join(slipwayDir, 'docker');
  return {
    dir,
    sockets: { 'linux/amd64': path.join(dir, 'linux-amd64.sock'), 'linux/arm64': path.join(dir, 'linux-arm64.sock') },
    stateFile: path.join(dir, 'daemon.json'),
    logFile: path.join(dir, 'daemon.log'),
  };
}

/** undefined when the environment names no home for Docker's configuration. */
export function dockerLocations(env: Env, slipwayDir: string): DockerLocations | undefined {
  const home = env['HOME'] || os.homedir();
  const dockerConfigDir = env['DOCKER_CONFIG'] ? path.resolve(env['DOCKER_CONFIG']) : home ? path.join(home, '.docker') : undefined;
  if (dockerConfigDir === undefined) return undefined;
  const buildxDir = env['BUILDX_CONFIG'] ? path.resolve(env['BUILDX_CONFIG']) : path.join(dockerConfigDir, 'buildx');
  const daemon = daemonPaths(slipwayDir);
  return {
    dockerConfigDir,
    configJson: path.join(dockerConfigDir, 'config.json'),
    buildxDir,
    instanceFile: path.join(buildxDir, 'instances', BUILDER_NAME),
    currentFile: path.join(buildxDir, 'current'),
    pluginFile: path.join(dockerConfigDir, 'cli-plugins', `docker-${BUILDER_NAME}`),
    daemon,
    // One record per Docker configuration: a user (or a test) may configure several.
    recordFile: path.join(daemon.dir, `configure-docker-${createHash('sha256').update(`${dockerConfigDir}\0${buildxDir}`).digest('hex').slice(0, 16)}.json`),
  };
}
