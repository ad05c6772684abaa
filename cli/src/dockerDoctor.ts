// doctor's last checks: is what configure-docker set up still as it left it, and does the daemon
// carry BuildKit's API on each platform's socket? Asked, never repaired: doctor changes nothing.
import fs from 'node:fs';
import net from 'node:net';
import type { Env, Platform } from '@slipway/proto';
import type { DoctorCheck } from './doctor.js';
import { BUILDER_NAME, type DockerLocations } from './dockerLocations.js';
import { readSetupRecord } from './dockerSetup.js';
import { parseBuildxCurrent } from './buildxStore.js';
import { BUILDER_ALIAS, builderAliasOf, parseDockerConfig } from './dockerCliConfig.js';
import { atLeast, BUILDX_DEFAULT_LOAD_SINCE, BUILDX_REMOTE_DRIVER_SINCE, detectBuildx } from './buildxCli.js';
import { daemonStatus } from './daemonControl.js';
import { listWorkersOver } from './buildkitProbe.js';

export async function dockerChecks(docker: DockerLocations | undefined, env: Env, gateway: string | undefined, platforms: readonly Platform[], earlier: readonly DoctorCheck[], timeoutMs: number): Promise<DoctorCheck[]> {
  if (docker === undefined) {
    return [{ id: 'docker', title: 'Docker', status: 'skip', summary: "skipped: no home for Docker's configuration (set DOCKER_CONFIG or HOME)", details: [] }];
  }
  const record = readSetupRecord(docker);
  if (record === undefined) {
    return [
      {
        id: 'docker',
        title: 'Docker',
        status: 'warn',
        summary: `slipway configure-docker has not set up ${docker.dockerConfigDir}: docker build does not use Slipway there`,
        details: [],
        fix: 'run slipway configure-docker (or use slipway proxy with a buildx builder of your own)',
      },
    ];
  }
  return [await setupCheck(docker, env, record.files.find((f) => f.role === 'instance')?.after), await daemonCheck(docker, gateway, platforms, earlier, timeoutMs)];
}

async function setupCheck(docker: DockerLocations, env: Env, instanceAfter: string | undefined): Promise<DoctorCheck> {
  const id = 'docker';
  const title = 'Docker';
  const problems: string[] = [];
  const details: string[] = [];
  const instance = readOrUndefined(docker.instanceFile);
  if (instance === undefined) problems.push(`the buildx builder file ${docker.instanceFile} is gone`);
  else if (instanceAfter !== undefined && !Buffer.from(instance).equals(Buffer.from(instanceAfter, 'base64'))) {
    problems.push(`the buildx builder file ${docker.instanceFile} was changed since configure-docker wrote it`);
  } else details.push(`buildx builder ${BUILDER_NAME}: ${docker.instanceFile}`);
  const current = parseBuildxCurrent(readOrUndefined(docker.currentFile) ?? '');
  if (current?.name !== BUILDER_NAME || !current.global) {
    problems.push(`buildx's current builder is ${current ? `'${current.name}'${current.global ? '' : ' (this context only)'}` : 'none'}, not '${BUILDER_NAME}' for every context`);
  } else details.push(`selected for every Docker context (${docker.currentFile})`);
  if (env['BUILDX_BUILDER'] && env['BUILDX_BUILDER'] !== BUILDER_NAME) problems.push(`BUILDX_BUILDER=${env['BUILDX_BUILDER']} in this environment overrides the selection`);
  try {
    const alias = builderAliasOf(parseDockerConfig(readOrUndefined(docker.configJson), docker.configJson));
    if (alias !== BUILDER_ALIAS) problems.push(`${docker.configJson} has ${alias ? `aliases.builder=${alias}` : 'no builder alias'}, so plain docker build may not run buildx`);
    else details.push(`docker build runs buildx (aliases.builder in ${docker.configJson})`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  try {
    fs.accessSync(docker.pluginFile, fs.constants.X_OK);
    details.push(`docker slipway plugin: ${docker.pluginFile}`);
  } catch {
    problems.push(`the docker slipway plugin ${docker.pluginFile} is missing or not executable`);
  }
  const buildx = await detectBuildx(env);
  let warning: string | undefined;
  if (buildx.kind === 'no-docker') warning = 'no docker CLI on PATH: nothing uses the builder';
  else if (buildx.kind === 'no-buildx') warning = `the buildx plugin is missing (${buildx.said}): docker build uses the classic builder, not Slipway`;
  else if (!atLeast(buildx.numbers, BUILDX_REMOTE_DRIVER_SINCE)) warning = `buildx ${buildx.version} is too old for the remote driver (0.8+)`;
  else if (!atLeast(buildx.numbers, BUILDX_DEFAULT_LOAD_SINCE)) {
    details.push(`buildx ${buildx.version}: images reach docker images only with --load (default-load needs 0.14)`);
  } else details.push(`buildx ${buildx.version}`);
  if (problems.length > 0) {
    return { id, title, status: 'fail', summary: problems[0]!, details: problems.slice(1), fix: 'run slipway configure-docker again (it puts back what is missing and changes nothing else)', code: 'DOCKER_SETUP' };
  }
  if (warning !== undefined) return { id, title, status: 'warn', summary: warning, details, fix: 'install the Docker CLI with the buildx plugin (0.14 or later)' };
  return { id, title, status: 'ok', summary: `builder '${BUILDER_NAME}' configured in ${docker.dockerConfigDir}`, details };
}

async function daemonCheck(docker: DockerLocations, gateway: string | undefined, platforms: readonly Platform[], earlier: readonly DoctorCheck[], timeoutMs: number): Promise<DoctorCheck> {
  const id = 'daemon';
  const title = 'Daemon';
  const status = daemonStatus(docker.daemon, platforms);
  if (!status.running) {
    return {
      id,
      title,
      status: 'fail',
      summary: `the Slipway daemon is not running${status.problem ? ` (${status.problem})` : ''}: buildx's nodes point at sockets nobody serves`,
      details: [`log: ${docker.daemon.logFile}`],
      fix: 'slipway daemon start (docker slipway build and configure-docker also start it)',
      code: 'DOCKER_SETUP',
    };
  }
  const details = [`pid ${status.state?.supervisorPid}, worker ${status.state?.workerPid ?? 'restarting'}, ${status.state?.workerStarts} worker start(s) since ${status.state?.startedAt}`];
  const problems: string[] = [];
  if (gateway !== undefined && status.state?.gateway !== gateway) {
    problems.push(`the daemon serves ${status.state?.gateway}, but this configuration names ${gateway}: it was started with other settings`);
  }
  for (const platform of platforms) {
    const socket = docker.daemon.sockets[platform];
    const mode = fs.statSync(socket).mode & 0o777;
    if (mode !== 0o600) problems.push(`${socket} has mode ${mode.toString(8)}, not 600: other users could build with your token`);
    // A platform without a builder fails the same way here: its own check already said why.
    if (earlier.find((c) => c.id === `builder:${platform}`)?.status !== 'ok') {
      details.push(`${platform}: not asked (no builder answered above)`);
      continue;
    }
    try {
      const workers = await listWorkersOver(() => net.connect(socket), timeoutMs);
      details.push(`${platform}: ListWorkers through unix://${socket} answered (${workers.length} worker(s))`);
    } catch (err) {
      problems.push(`${platform}: ListWorkers through unix://${socket} failed: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) {
    return { id, title, status: 'fail', summary: problems[0]!, details: [...problems.slice(1), ...details, `log: ${docker.daemon.logFile}`], fix: 'slipway daemon stop, then slipway daemon start; the log says what the daemon met', code: 'DOCKER_SETUP' };
  }
  return { id, title, status: 'ok', summary: `running; its sockets carry BuildKit's API`, details };
}

function readOrUndefined(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
