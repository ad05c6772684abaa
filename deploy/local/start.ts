// `npm start`: a gateway and a local agent in one process, on the development PKI. Only wiring
// lives here; see devStack.ts for what is started and config.ts for the flags.
import path from 'node:path';
import { createLogger } from '@slipway/proto';
import { BUILDKITD_SOCKET, DEV_LAUNCHER_FLAGS, loadConfig, type DevLauncherConfig } from './config.js';
import { DEV_PROJECT, startDevStack, type DevStack } from './devStack.js';
import { exitCodeOf, toDevLauncherError } from './devLauncherError.js';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(
    `Usage: npm start -- [flags]\n` +
      `Runs a Slipway gateway and a local build agent in one process, with a development PKI and tokens.\n` +
      `Every flag can also be given as the environment variable shown.\n` +
      `${Object.entries(DEV_LAUNCHER_FLAGS).map(([f, v]) => `  ${f.padEnd(14)} ${v}`).join('\n')}\n` +
      `Defaults: --listen 127.0.0.1:8443, --dir <repo>/.slipway, --tls-name gateway, --upstream\n` +
      `buildkitd:unix://${BUILDKITD_SOCKET} if that socket exists, else dockerd:unix:///var/run/docker.sock.\n`,
  );
  process.exit(0);
}

function fail(err: unknown): never {
  const error = toDevLauncherError(err);
  process.stderr.write(`slipway dev launcher: ${error.message}\n`);
  process.exit(exitCodeOf(error));
}

let config: DevLauncherConfig;
try {
  config = loadConfig(process.env, argv);
} catch (err) {
  fail(err);
}
const log = createLogger('dev', config.logLevel);

function describeUpstream(c: DevLauncherConfig): string {
  switch (c.upstreamChoice) {
    case 'given':
      return `${c.upstream} (from --upstream)`;
    case 'buildkitd-socket-found':
      return `${c.upstream} (found BuildKit's socket)`;
    case 'dockerd-fallback':
      return `${c.upstream} (no ${BUILDKITD_SOCKET}; using the Docker Engine's BuildKit)`;
  }
}

function shown(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

function printReady(stack: DevStack): void {
  const sock = '/tmp/slipway.sock';
  const lines = [
    '',
    'Slipway is running: gateway and local agent in this process.',
    `  gateway   ${stack.gatewayUrl}  (GET /healthz, /readyz, /metrics)`,
    `  agent     ${stack.agentId}  ${config.platform}  ${stack.agentRegistered ? 'registered' : 'NOT registered yet (see the log)'}`,
    `  upstream  ${describeUpstream(config)}`,
    `  PKI       ${shown(stack.pki.dir)}  (trust ${shown(stack.pki.caCertPath)})`,
    `  env file  ${shown(stack.envFile)}  (project '${DEV_PROJECT}')`,
  ];
  if (config.upstreamSocketMissing !== undefined) {
    lines.push(
      '',
      `WARNING: ${config.upstreamSocketMissing} does not exist. Builds will fail with UPSTREAM_UNAVAILABLE`,
      `         until it does: start dockerd or buildkitd, or restart with --upstream KIND:ADDRESS.`,
    );
  }
  lines.push(
    '',
    'Next, in another shell:',
    `  source ${shown(stack.envFile)}`,
    `  npx slipway proxy --platform ${config.platform} --listen unix://${sock}`,
    'and in a third:',
    `  docker buildx create --name slipway --driver remote unix://${sock}`,
    `  docker buildx build --builder slipway --platform ${config.platform} .`,
    '',
    'Ctrl-C drains the agent and closes the gateway.',
    '',
  );
  process.stdout.write(lines.join('\n'));
}

if (config.upstreamSocketMissing !== undefined) {
  log.warn('upstream socket does not exist; starting anyway', { upstream: config.upstream, path: config.upstreamSocketMissing });
}
log.info('starting', { upstream: config.upstream, choice: config.upstreamChoice, dir: config.dir });
const starting = startDevStack(config, log);

let stopping = false;
function shutdown(signal: NodeJS.Signals): void {
  if (stopping) {
    log.warn('second signal: exiting now', { signal });
    process.exit(1);
  }
  stopping = true;
  log.info('shutting down: draining the agent, then closing the gateway', { signal });
  // A signal during startup waits for it to finish, so nothing started is left behind.
  starting
    .then((stack) => stack.stop())
    .then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => fail(err),
    );
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));

starting.then(printReady, (err: unknown) => fail(err));
