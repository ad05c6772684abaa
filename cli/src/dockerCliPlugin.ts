// `docker slipway ...`: the Docker CLI plugin configure-docker installs. Docker finds it as
// $DOCKER_CONFIG/cli-plugins/docker-slipway, asks it `docker-cli-plugin-metadata` when listing
// plugins, and runs it with its own name first for `docker slipway ARGS`. The file is a small
// shell script that runs this program; the program answers:
//
//   docker slipway build ARGS    the Slipway daemon is started if it is not running, then
//                                `docker buildx build --builder slipway ARGS`
//   docker slipway COMMAND ...   any slipway command (doctor, daemon status, login, ...)
import { BUILDER_NAME } from './dockerLocations.js';
import { programArgs, type SlipwayProgram } from './slipwayProgram.js';
import { CLI_VERSION } from './cliVersion.js';

export const PLUGIN_VERSION = CLI_VERSION;

/** What the Docker CLI expects from `docker-<name> docker-cli-plugin-metadata`. */
export function pluginMetadata(): string {
  return JSON.stringify(
    {
      SchemaVersion: '0.1.0',
      Vendor: 'Slipway',
      Version: PLUGIN_VERSION,
      ShortDescription: "Build on Slipway's remote builders",
    },
    null,
    2,
  );
}

/** The plugin file: runs this program with the node that installed it. */
export function pluginScript(program: SlipwayProgram): string {
  return [
    '#!/bin/sh',
    `# The Docker CLI plugin of Slipway: docker slipway build ... builds on the '${BUILDER_NAME}' buildx builder.`,
    '# Written by slipway configure-docker; slipway configure-docker --uninstall removes it.',
    `exec ${[program.node, ...programArgs(program, [])].map(shellQuote).join(' ')} docker-cli-plugin "$@"`,
    '',
  ].join('\n');
}

export type PluginInvocation =
  | { kind: 'metadata' }
  | { kind: 'build'; args: string[] }
  | { kind: 'slipway'; argv: string[] };

/** What the Docker CLI asked of the plugin (the arguments after `docker-cli-plugin`). */
export function pluginInvocation(args: readonly string[]): PluginInvocation {
  if (args[0] === 'docker-cli-plugin-metadata') return { kind: 'metadata' };
  // Docker passes the plugin's own name first; run by hand it may be missing.
  const rest = args[0] === BUILDER_NAME ? args.slice(1) : [...args];
  if (rest[0] === 'build') return { kind: 'build', args: rest.slice(1) };
  return { kind: 'slipway', argv: rest };
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
