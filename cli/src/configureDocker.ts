// `slipway configure-docker [--uninstall]`: starts the daemon, writes the Docker side
// (dockerSetup.ts), checks it with buildx where buildx is, and says in plain words what works
// and, when buildx is missing or old, exactly what does not.
import fs from 'node:fs';
import type { DaemonConfig } from './config.js';
import type { CommandOutput } from './adminCommand.js';
import { BUILDER_NAME, type DockerLocations } from './dockerLocations.js';
import { atLeast, BUILDX_DEFAULT_LOAD_SINCE, BUILDX_REMOTE_DRIVER_SINCE, detectBuildx, inspectCurrentBuilder, type BuildxInfo } from './buildxCli.js';
import { ensureDaemon, stopDaemon } from './daemonControl.js';
import { installDockerSetup, otherSetups, uninstallDockerSetup, type SetupChange } from './dockerSetup.js';
import type { SlipwayProgram } from './slipwayProgram.js';

export interface ConfigureDockerResult {
  /** Problems that leave Docker unable to use Slipway (buildx missing or too old, inspect failing). */
  warnings: string[];
}

const ROLE_WORDS: Record<SetupChange['role'], string> = {
  instance: `buildx builder '${BUILDER_NAME}'`,
  current: 'global builder selection',
  config: 'builder alias (docker build runs buildx)',
  plugin: 'docker slipway plugin',
};

export async function configureDocker(config: DaemonConfig, docker: DockerLocations, program: SlipwayProgram, out: CommandOutput): Promise<ConfigureDockerResult> {
  const say = (line: string): void => out.stderr(`${line}\n`);
  const warnings: string[] = [];
  const buildx = await detectBuildx(config.env);
  const defaultLoad = buildx.kind !== 'buildx' || atLeast(buildx.numbers, BUILDX_DEFAULT_LOAD_SINCE);

  // The daemon first: if it cannot run (no token, say), nothing is changed.
  const daemon = await ensureDaemon({ paths: docker.daemon, platforms: config.platforms, program, args: config.passThrough, env: config.env });
  const changes = installDockerSetup({ locations: docker, platforms: config.platforms, env: config.env, program, driverOpts: defaultLoad ? { 'default-load': 'true' } : undefined });

  say(`Slipway for Docker (${config.gatewayUrl.origin}):`);
  say('');
  for (const change of changes) say(`${change.what === 'unchanged' ? '✔' : '✨'} ${ROLE_WORDS[change.role]}: ${change.what === 'unchanged' ? 'already set' : change.what} (${change.path})`);
  say(`✔ daemon ${daemon.started ? 'started' : 'running'} (pid ${daemon.state?.supervisorPid}): ${config.platforms.map((p) => `${p} → unix://${docker.daemon.sockets[p]}`).join(', ')}`);
  const nodes = config.platforms.map((p) => `${BUILDER_NAME}-${p.split('/')[1]} (${p})`).join(', ');
  say(`  nodes ${nodes}${defaultLoad ? ', default-load=true' : ''}`);

  warnings.push(...buildxWarnings(buildx));
  if (buildx.kind === 'buildx' && atLeast(buildx.numbers, BUILDX_REMOTE_DRIVER_SINCE)) {
    const inspection = await inspectCurrentBuilder(buildx.docker, config.env);
    if (inspection.name !== BUILDER_NAME) {
      warnings.push(`docker buildx inspect reports '${inspection.name ?? 'no builder'}' as the current builder, not '${BUILDER_NAME}'${inspection.failed ? `: ${inspection.failed}` : ''}; is BUILDX_BUILDER set in your environment?`);
    } else {
      say(`✔ docker buildx inspect: current builder ${inspection.name} (${inspection.driver ?? '?'} driver)`);
      for (const node of inspection.nodes) {
        const line = `${node.name}: ${node.status || 'unknown'}${node.platforms ? ` (${node.platforms})` : ''}${node.error ? `: ${node.error}` : ''}`;
        if (node.status === 'running') say(`  ${line}`);
        else warnings.push(`buildx node ${line}; builds for its platform fail until a builder for it is available (slipway doctor says why)`);
      }
    }
  }
  for (const warning of warnings) say(`\n▲ [WARNING] ${warning}`);
  say('');
  say(
    buildx.kind === 'buildx' && atLeast(buildx.numbers, BUILDX_REMOTE_DRIVER_SINCE)
      ? `docker build, docker buildx build and docker compose build now build on Slipway${defaultLoad ? '' : ' (add --load to get the image into docker images)'}.`
      : 'The builder is configured; Docker builds go through it once buildx is installed (see above).',
  );
  say('Undo with: slipway configure-docker --uninstall');
  return { warnings };
}

// What is missing, precisely, and what still works without it.
function buildxWarnings(buildx: BuildxInfo): string[] {
  const stillWorks =
    `Still working: the daemon's sockets speak BuildKit's API (BUILDKIT_HOST=unix://... buildctl build ...), and ` +
    `slipway proxy / slipway dial-stdio as before.`;
  switch (buildx.kind) {
    case 'no-docker':
      return [`no docker CLI on PATH: nothing can use the builder yet. Install the Docker CLI with the buildx plugin (0.14 or later), then run slipway configure-docker again to check. ${stillWorks}`];
    case 'no-buildx':
      return [
        `the buildx plugin is missing (${buildx.docker} buildx: "${buildx.said}"). Without it docker build uses the classic builder on the local daemon, not Slipway, and docker buildx cannot run. ` +
          `Install docker-buildx (0.14 or later) into ~/.docker/cli-plugins or /usr/libexec/docker/cli-plugins, then run slipway configure-docker again. ${stillWorks}`,
      ];
    case 'buildx':
      if (!atLeast(buildx.numbers, BUILDX_REMOTE_DRIVER_SINCE)) {
        return [`buildx ${buildx.version} is too old: the remote driver the builder uses came in buildx 0.8. Upgrade buildx (0.14 or later). ${stillWorks}`];
      }
      if (!atLeast(buildx.numbers, BUILDX_DEFAULT_LOAD_SINCE)) {
        return [
          `buildx ${buildx.version} has no default-load for the remote driver (it came in 0.14), so the nodes are written without it: ` +
            'builds run on Slipway, but an image reaches docker images only with --load (or --output type=docker). Upgrade buildx and run slipway configure-docker again to load by default.',
        ];
      }
      return [];
  }
}

export async function unconfigureDocker(docker: DockerLocations, out: CommandOutput): Promise<void> {
  const say = (line: string): void => out.stderr(`${line}\n`);
  const changes = uninstallDockerSetup(docker);
  if (changes === undefined) {
    say(`Nothing to undo: slipway configure-docker has not configured ${docker.dockerConfigDir}.`);
  } else {
    say(`Slipway removed from ${docker.dockerConfigDir}:`);
    say('');
    for (const change of changes) say(`${change.what === 'left as changed since' ? '▲' : '✔'} ${change.path}: ${change.what}`);
    if (changes.length === 0) say('✔ nothing had to change');
  }
  if (otherSetups(docker).length > 0) {
    say(`The Slipway daemon keeps running: another Docker configuration uses it.`);
    return;
  }
  const stopped = await stopDaemon(docker.daemon);
  for (const file of [docker.daemon.logFile, docker.daemon.stateFile]) fs.rmSync(file, { force: true });
  try {
    fs.rmdirSync(docker.daemon.dir);
  } catch {
    // Something else lives there.
  }
  if (stopped) say('✔ Slipway daemon stopped');
}
