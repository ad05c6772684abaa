import { createLogger, type Logger } from '@slipway/proto';
import { spawn } from 'node:child_process';
import type net from 'node:net';
import { loadConfig, type CliConfig, type DaemonConfig } from './config.js';
import { CliError, exitCodeOf, toCliError } from './cliError.js';
import { TunnelClient, type ProjectTokenSource } from './tunnelClient.js';
import { LocalProxy } from './localProxy.js';
import { bridgeLocal } from './localBridge.js';
import { GatewayConnection } from './gatewayConnection.js';
import { AdminClient } from './adminClient.js';
import { runAdminCommand, type CommandOutput } from './adminCommand.js';
import { runLogin, runLogout } from './login.js';
import { OidcTokenExchange } from './oidcTokenExchange.js';
import { TransportMemory, transportMemoryFile } from './transportMemory.js';
import { doctorExitCode, renderDoctorReport, runDoctor } from './doctor.js';
import { programArgs, slipwayProgram } from './slipwayProgram.js';
import { configureDocker, unconfigureDocker } from './configureDocker.js';
import { DaemonSupervisor, type ConnectionMessage, type WorkerMessage } from './daemonSupervisor.js';
import { DaemonWorker } from './daemonWorker.js';
import { daemonStatus, ensureDaemon, stopDaemon } from './daemonControl.js';
import { daemonPaths, platformsNativeFirst, BUILDER_NAME } from './dockerLocations.js';
import { pluginInvocation, pluginMetadata } from './dockerCliPlugin.js';
import { findDocker } from './buildxCli.js';
import { dockerChecks } from './dockerDoctor.js';
import { loadBuildCommand, runBuild } from './build/buildCommand.js';

const output: CommandOutput = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'build') return build(argv.slice(1));
  const command = loadConfig(process.env, argv);
  switch (command.command) {
    case 'help':
      (command.ok ? process.stdout : process.stderr).write(`${command.text}\n`);
      return command.ok ? 0 : 2;
    case 'logout':
      runLogout(command.admin, command.credentialsFile, output);
      return 0;
    case 'login': {
      const connection = new GatewayConnection({ ...command.config, transport: 'auto', log: createLogger('slipway', 'warn'), transportMemory: memoryOf(command.config.slipwayDir) });
      try {
        await runLogin(command.config, connection, process.stdin, output);
      } finally {
        connection.close();
      }
      return 0;
    }
    case 'admin': {
      const { config } = command;
      const connection = new GatewayConnection({ ...config, transport: 'auto', log: createLogger('slipway', 'warn'), transportMemory: memoryOf(config.slipwayDir) });
      try {
        await runAdminCommand(command.request, new AdminClient(connection, config.adminToken, Math.max(config.connectTimeoutMs, 10_000)), config.json, output);
      } finally {
        connection.close();
      }
      return 0;
    }
    case 'doctor': {
      const { config } = command;
      const report = await runDoctor(config, {
        log: createLogger('slipway', 'silent'),
        transportMemory: memoryOf(config.slipwayDir),
        extraChecks: (earlier) => dockerChecks(config.docker, config.env, config.gatewayKnown ? config.gatewayUrl.origin : undefined, config.platforms, earlier, Math.max(config.connectTimeoutMs, 10_000)),
      });
      process.stdout.write(config.json ? `${JSON.stringify(report, null, 2)}\n` : renderDoctorReport(report));
      return doctorExitCode(report);
    }
    case 'proxy':
    case 'dial-stdio':
      return tunnel(command.command, command.config);
    case 'configure-docker':
      if (command.uninstall) await unconfigureDocker(command.docker, output);
      else await configureDocker(command.config, command.docker, slipwayProgram(), output);
      return 0;
    case 'daemon start': {
      const { config } = command;
      const status = await ensureDaemon({ paths: daemonPaths(config.slipwayDir), platforms: config.platforms, program: slipwayProgram(), args: config.passThrough, env: config.env });
      process.stderr.write(`${status.started ? 'Started' : 'Already running:'} the Slipway daemon (pid ${status.state?.supervisorPid}) for ${config.gatewayUrl.origin}\n`);
      for (const [platform, socket] of Object.entries(status.state?.sockets ?? {})) process.stderr.write(`  ${platform} → unix://${socket}\n`);
      return 0;
    }
    case 'daemon stop':
      process.stderr.write((await stopDaemon(daemonPaths(command.slipwayDir))) ? 'Stopped the Slipway daemon.\n' : 'The Slipway daemon was not running.\n');
      return 0;
    case 'daemon status': {
      const paths = daemonPaths(command.slipwayDir);
      const status = daemonStatus(paths, platformsNativeFirst());
      if (command.json) process.stdout.write(`${JSON.stringify({ running: status.running, ready: status.ready, ...status.state, problem: status.problem }, null, 2)}\n`);
      else if (!status.running) process.stderr.write(`The Slipway daemon is not running${status.problem ? ` (${status.problem})` : ''}: slipway daemon start (log: ${paths.logFile})\n`);
      else {
        const state = status.state!;
        process.stderr.write(`The Slipway daemon runs (pid ${state.supervisorPid}, worker ${status.ready ? `pid ${state.workerPid}` : 'restarting'}, ${state.workerStarts} worker start(s) since ${state.startedAt}) for ${state.gateway}\n`);
        for (const [platform, socket] of Object.entries(state.sockets)) process.stderr.write(`  ${platform} → unix://${socket}\n`);
      }
      return 0;
    }
    case 'daemon run':
      return daemonRun(command.config);
    case 'daemon worker':
      return daemonWorker(command.config);
    case 'docker-cli-plugin':
      return dockerCliPlugin(command.args);
  }
}

// The daemon's supervisor, in the foreground (daemon start runs it detached, output to its log).
async function daemonRun(config: DaemonConfig): Promise<number> {
  const program = slipwayProgram();
  const supervisor = new DaemonSupervisor({
    paths: daemonPaths(config.slipwayDir),
    platforms: config.platforms,
    gateway: config.gatewayUrl.origin,
    worker: { file: program.node, args: programArgs(program, ['daemon', 'worker', ...config.passThrough]) },
    env: config.env,
    log: createLogger('slipway-daemon', config.logLevel === 'warn' ? 'info' : config.logLevel),
  });
  const stop = (): void => void supervisor.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await supervisor.start();
  return supervisor.done;
}

async function daemonWorker(config: DaemonConfig): Promise<number> {
  const log = createLogger('slipway-worker', config.logLevel === 'warn' ? 'info' : config.logLevel);
  const { token, exchange } = projectToken(config, log);
  const worker = new DaemonWorker(
    config.platforms,
    {
      gatewayUrl: config.gatewayUrl,
      token,
      project: config.project,
      ca: config.ca,
      transport: config.transport,
      env: config.env,
      connectTimeoutMs: config.connectTimeoutMs,
      acquireTimeoutMs: config.acquireTimeoutMs,
      buildIdleMs: config.buildIdleMs,
      transportMemory: memoryOf(config.slipwayDir),
      keepaliveMs: config.keepaliveMs,
    },
    log,
  );
  process.on('message', (message: ConnectionMessage, socket: net.Socket | undefined) => {
    if (message?.type !== 'connection' || !socket) return;
    // Said before a byte is read: until then the supervisor may give the connection to another worker.
    process.send?.({ type: 'adopted', id: message.id } satisfies WorkerMessage);
    worker.adopt(message.platform, socket);
  });
  if (exchange) await exchange.token(worker.client(config.platforms[0]!)!);
  process.send?.({ type: 'ready' });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
    // The supervisor is gone: a new one will start its own worker.
    process.once('disconnect', () => resolve());
  });
  await worker.close();
  return 0;
}

// `docker slipway ...` (and `docker-slipway docker-cli-plugin-metadata`).
async function dockerCliPlugin(args: string[]): Promise<number> {
  const invocation = pluginInvocation(args);
  if (invocation.kind === 'metadata') {
    process.stdout.write(`${pluginMetadata()}\n`);
    return 0;
  }
  if (invocation.kind === 'slipway') return invocation.argv.length === 0 ? main(['--help']) : main(invocation.argv);
  // A build: the daemon must be serving the builder's sockets first.
  const command = loadConfig(process.env, ['daemon', 'start']);
  if (command.command !== 'daemon start') throw new CliError('INTERNAL', 'expected the daemon configuration');
  const { config } = command;
  await ensureDaemon({ paths: daemonPaths(config.slipwayDir), platforms: config.platforms, program: slipwayProgram(), args: [], env: config.env });
  const docker = process.env['DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND'] || findDocker(config.env);
  if (!docker) throw new CliError('CONFIG_INVALID', 'cannot find the docker CLI to run docker buildx build with (not on PATH)');
  const child = spawn(docker, ['buildx', 'build', '--builder', BUILDER_NAME, ...invocation.args], { stdio: 'inherit' });
  return new Promise<number>((resolve, reject) => {
    child.once('error', (err) => reject(new CliError('CONFIG_INVALID', `cannot run ${docker}: ${err.message}`, { cause: err })));
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** The project token, or the CI identity exchange that gives one. */
function projectToken(config: Pick<CliConfig, 'credential' | 'env' | 'connectTimeoutMs'>, log: ReturnType<typeof createLogger>): { token: ProjectTokenSource; exchange: OidcTokenExchange | undefined } {
  const { credential } = config;
  if (credential.kind === 'token') return { token: credential.token, exchange: undefined };
  const exchange = new OidcTokenExchange({
    project: credential.project,
    audience: credential.audience,
    env: config.env,
    log,
    timeoutMs: Math.max(config.connectTimeoutMs, 10_000),
    announce: (line) => process.stderr.write(`slipway: ${line}\n`),
  });
  return { token: (api) => exchange.token(api), exchange };
}

type TunnelSettings = Pick<CliConfig, 'gatewayUrl' | 'project' | 'ca' | 'transport' | 'env' | 'connectTimeoutMs' | 'acquireTimeoutMs' | 'slipwayDir' | 'keepaliveMs'>;

function tunnelClient(config: TunnelSettings, token: ProjectTokenSource, log: Logger, buildIdleMs: number): TunnelClient {
  return new TunnelClient({
    gatewayUrl: config.gatewayUrl,
    token,
    project: config.project,
    ca: config.ca,
    transport: config.transport,
    env: config.env,
    connectTimeoutMs: config.connectTimeoutMs,
    log,
    acquireTimeoutMs: config.acquireTimeoutMs,
    buildIdleMs,
    transportMemory: memoryOf(config.slipwayDir),
    keepaliveMs: config.keepaliveMs,
  });
}

async function tunnel(command: 'proxy' | 'dial-stdio', config: CliConfig): Promise<number> {
  const log = createLogger('slipway', config.logLevel);
  const { token, exchange } = projectToken(config, log);
  // dial-stdio serves one connection: its build ends with it.
  const client = tunnelClient(config, token, log, command === 'dial-stdio' ? 0 : config.buildIdleMs);
  // Exchanged up front: a CI job not allowed to build should fail here, not at its first build.
  if (exchange) await exchange.token(client);
  if (command === 'dial-stdio') {
    const error = await bridgeLocal(
      {
        readable: process.stdin,
        writable: process.stdout,
        end: () => process.stdout.end(),
        destroy: () => {
          process.stdin.destroy();
        },
      },
      client,
      config.platform,
      log,
    );
    await client.close();
    if (error) throw error;
    return 0;
  }
  const proxy = new LocalProxy(client, config.platform, log);
  for (const address of config.listen) {
    const bound = await proxy.listen(address);
    process.stderr.write(`slipway: serving ${config.platform} builders at ${bound}\n`);
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await proxy.close();
  await client.close();
  return 0;
}

// `slipway build`: progress and the build's report on stderr, as buildx writes them.
async function build(argv: string[]): Promise<number> {
  const command = loadBuildCommand(process.env, argv, process.cwd());
  if (command.config === undefined) {
    process.stdout.write(`${command.help}\n`);
    return 0;
  }
  const { config } = command;
  const log = createLogger('slipway', config.logLevel);
  const { token, exchange } = projectToken(config, log);
  const client = tunnelClient(config, token, log, 0);
  // Ctrl-C cancels the solves on their builders, then the build is finished as usual.
  const interrupted = new AbortController();
  const interrupt = (): void => interrupted.abort();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    if (exchange) await exchange.token(client);
    return await runBuild(
      command,
      client,
      {
        stderr: (text) => process.stderr.write(text),
        stdout: (text) => process.stdout.write(text),
        isTty: process.stderr.isTTY === true,
        columns: () => process.stderr.columns || 80,
        rows: () => process.stderr.rows || 24,
      },
      interrupted.signal,
    );
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    await client.close();
  }
}

function memoryOf(slipwayDir: string | undefined): TransportMemory {
  return new TransportMemory(transportMemoryFile(slipwayDir));
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const error = toCliError(err);
    process.stderr.write(`slipway: error: ${error.message}\n`);
    process.exit(exitCodeOf(error.code));
  },
);
