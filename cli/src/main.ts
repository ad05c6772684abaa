import { createLogger } from '@slipway/proto';
import { loadConfig, type CliConfig } from './config.js';
import { exitCodeOf, toCliError } from './cliError.js';
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

const output: CommandOutput = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

async function main(argv: string[]): Promise<number> {
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
      const report = await runDoctor(command.config, { log: createLogger('slipway', 'silent'), transportMemory: memoryOf(command.config.slipwayDir) });
      process.stdout.write(command.config.json ? `${JSON.stringify(report, null, 2)}\n` : renderDoctorReport(report));
      return doctorExitCode(report);
    }
    case 'proxy':
    case 'dial-stdio':
      return tunnel(command.command, command.config);
  }
}

async function tunnel(command: 'proxy' | 'dial-stdio', config: CliConfig): Promise<number> {
  const log = createLogger('slipway', config.logLevel);
  const { credential } = config;
  let token: ProjectTokenSource;
  let exchange: OidcTokenExchange | undefined;
  if (credential.kind === 'token') {
    token = credential.token;
  } else {
    exchange = new OidcTokenExchange({
      project: credential.project,
      audience: credential.audience,
      env: config.env,
      log,
      timeoutMs: Math.max(config.connectTimeoutMs, 10_000),
      announce: (line) => process.stderr.write(`slipway: ${line}\n`),
    });
    const source = exchange;
    token = (api) => source.token(api);
  }
  const client = new TunnelClient({
    gatewayUrl: config.gatewayUrl,
    token,
    project: config.project,
    ca: config.ca,
    transport: config.transport,
    env: config.env,
    connectTimeoutMs: config.connectTimeoutMs,
    log,
    acquireTimeoutMs: config.acquireTimeoutMs,
    // dial-stdio serves one connection: its build ends with it.
    buildIdleMs: command === 'dial-stdio' ? 0 : config.buildIdleMs,
    transportMemory: memoryOf(config.slipwayDir),
    keepaliveMs: config.keepaliveMs,
  });
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
