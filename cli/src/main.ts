import { createLogger } from '@slipway/proto';
import { CLI_FLAGS, loadConfig } from './config.js';
import { CliError, exitCodeOf, toCliError } from './cliError.js';
import { TunnelClient } from './tunnelClient.js';
import { LocalProxy } from './localProxy.js';
import { bridgeLocal } from './localBridge.js';

const USAGE = `Usage: slipway <command> [flags]

Commands:
  proxy --platform P --listen unix:///PATH.sock|tcp://127.0.0.1:PORT [--listen ...]
      Serve local endpoints for docker/buildx; each connection is one tunnel to a builder.
      The first connection creates a build and acquires a builder (the project's warm one
      when it is free); the build ends --build-idle-ms after the last connection closes.
  dial-stdio --platform P
      Carry stdin/stdout as one tunnel stream (for buildx/ssh-style connection helpers);
      its build ends when the stream does.

Flags (or environment variables):
${Object.entries(CLI_FLAGS)
  .map(([f, v]) => `  ${f.padEnd(24)} ${v}`)
  .join('\n')}
HTTPS_PROXY / NO_PROXY are honoured (HTTP CONNECT).`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  if (command !== 'proxy' && command !== 'dial-stdio') {
    throw new CliError('CONFIG_INVALID', `unknown command '${command}'; expected proxy or dial-stdio (see slipway --help)`);
  }
  const config = loadConfig(process.env, rest, { listen: command === 'proxy' });
  const log = createLogger('slipway', config.logLevel);
  const client = new TunnelClient({
    gatewayUrl: config.gatewayUrl,
    token: config.token,
    project: config.project,
    ca: config.ca,
    transport: config.transport,
    env: config.env,
    connectTimeoutMs: config.connectTimeoutMs,
    log,
    acquireTimeoutMs: config.acquireTimeoutMs,
    // dial-stdio serves one connection: its build ends with it.
    buildIdleMs: command === 'dial-stdio' ? 0 : config.buildIdleMs,
  });
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const error = toCliError(err);
    process.stderr.write(`slipway: error: ${error.message}\n`);
    process.exit(exitCodeOf(error.code));
  },
);
