import type { Env } from '@slipway/proto';
import { commandHelp, parseCommandLine, type CommandSpec, type FlagSpec } from '../commandLine.js';
import { CliError } from '../cliError.js';
import { COMMANDS } from '../cliCommands.js';
import { loadConfig, type CliConfig } from '../config.js';
import { platformsNativeFirst } from '../dockerLocations.js';
import { buildOptionsOf } from './buildOptions.js';
import { BuildCancelled, runNativeBuild } from './nativeBuild.js';
import { BuildFailure } from './buildFailure.js';
import type { TunnelClient } from '../tunnelClient.js';
import type { BuildConsole } from './buildConsole.js';
import { writeBuildRecords } from './buildMetadata.js';
import { loadedPlatformOf, resultReport } from './buildReport.js';
import { pushIndexIfSeveral } from './multiPlatformPush.js';

// `slipway build`: buildx's build, spoken to BuildKit by the CLI itself through the gateway.
// Its connection flags mean what they mean for `slipway dial-stdio`, whose configuration they
// are read into, so credentials and proxies are resolved in one place.

const CONNECTION_FLAGS = ['--gateway', '--ca-cert', '--connect-timeout-ms', '--token', '--project', '--oidc-audience', '--transport', '--acquire-timeout-ms', '--keepalive-ms', '--log-level'];

function buildFlags(): Record<string, FlagSpec> {
  const base = loadConfigSpecFlags();
  const flag = (kind: FlagSpec['kind'], help: string, placeholder?: string): FlagSpec => ({ kind, help, ...(placeholder ? { placeholder } : {}) });
  return {
    '--file': flag('value', "the Dockerfile (default CONTEXT/Dockerfile)", 'PATH'),
    '-f': flag('value', 'same as --file', 'PATH'),
    '--tag': flag('list', 'name:tag of the image: what --push pushes and --load loads', 'NAME'),
    '-t': flag('list', 'same as --tag', 'NAME'),
    '--build-arg': flag('list', 'KEY=VALUE build argument (KEY alone: from the environment)', 'KEY=VALUE'),
    '--label': flag('list', 'KEY=VALUE image label', 'KEY=VALUE'),
    '--target': flag('value', 'the stage to build', 'STAGE'),
    '--platform': flag('list', 'linux/amd64 and/or linux/arm64, comma-separated (default this machine\'s): one solve per platform, in parallel', 'P'),
    '--output': flag('list', 'type=local,dest=DIR | type=tar,dest=FILE | type=image[,name=REF][,push=true] | type=registry | type=docker[,dest=FILE] | type=oci,dest=FILE (DIR alone: local; type=docker without dest: --load); with several platforms local goes to DIR/<os>_<arch>/, tar and oci to <os>_<arch>-FILE', 'SPEC'),
    '-o': flag('list', 'same as --output', 'SPEC'),
    '--progress': flag('value', 'auto (tty on a terminal, else plain), tty, plain, quiet (errors only; the image ID on stdout) or rawjson; default $BUILDKIT_PROGRESS, else auto', 'MODE'),
    '--no-cache': flag('switch', 'do not use the builder\'s cache'),
    '--secret': flag('list', 'id=ID,src=FILE or id=ID,env=VAR for RUN --mount=type=secret', 'SPEC'),
    '--pull': flag('switch', 'always fetch the base images\' newest versions'),
    '--ssh': flag('list', 'default or ID[=SOCKET|=KEYFILE[,KEYFILE]] for RUN --mount=type=ssh (no path: the agent at SSH_AUTH_SOCK); the builder may only list keys and sign', 'SPEC'),
    '--cache-from': flag('list', 'REF or type=registry,ref=REF: import build cache from there (an image pushed with inline cache, or a --cache-to ref); with several platforms, REF\'s tag + -<os>-<arch> for each', 'SPEC'),
    '--cache-to': flag('list', 'type=registry,ref=REF[,mode=min|max] or type=inline (into the image): export the build cache; with several platforms, REF\'s tag + -<os>-<arch> for each', 'SPEC'),
    '--push': flag('switch', 'same as --output type=image,push=true, named by the -t tags; with several platforms each is pushed by digest, then one image index'),
    '--load': flag('switch', 'same as --output type=docker: load the image into the local Docker (DOCKER_HOST, else /var/run/docker.sock); with several platforms, this machine\'s only'),
    '--metadata-file': flag('value', 'write the result\'s metadata as buildx does (JSON: containerimage.digest, containerimage.descriptor, image.name; per platform when several)', 'FILE'),
    '--iidfile': flag('value', 'write the image ID (its config digest; the index digest for a multi-platform push) to this file', 'FILE'),
    ...base,
  };
}

function loadConfigSpecFlags(): Record<string, FlagSpec> {
  const flags = COMMANDS.get('dial-stdio')?.flags ?? {};
  return Object.fromEntries(Object.entries(flags).filter(([f]) => CONNECTION_FLAGS.includes(f)));
}

export function buildCommandSpec(): CommandSpec {
  return {
    name: 'build',
    args: ['CONTEXT'],
    flags: buildFlags(),
    summary:
      'Build a Dockerfile as docker buildx build does, with BuildKit spoken by this CLI through the\n' +
      'gateway: no local Docker needed. The context (minus .dockerignore) is sent from here; each\n' +
      'platform is solved on a builder of its own, in parallel. A failing step exits 1 with its log.',
  };
}

export interface BuildCommand {
  help: string | undefined;
  config: CliConfig;
  options: ReturnType<typeof buildOptionsOf>;
}

/** Parses `slipway build ...`; every problem at once, as CONFIG_INVALID. */
export function loadBuildCommand(env: Env, argv: readonly string[], cwd: string): BuildCommand | { help: string; config?: undefined } {
  const spec = buildCommandSpec();
  const problems: string[] = [];
  const line = parseCommandLine(spec, argv, problems);
  if (line.help) return { help: commandHelp(spec) };
  const native = platformsNativeFirst()[0]!;
  const options = buildOptionsOf(line, env, cwd, native, problems);
  const passed: string[] = [];
  for (const flag of CONNECTION_FLAGS) {
    const value = line.values.get(flag);
    if (value !== undefined) passed.push(flag, value);
  }
  let config: CliConfig | undefined;
  try {
    const command = loadConfig(env, ['dial-stdio', ...passed, '--platform', options.platforms[0] ?? native]);
    if (command.command === 'dial-stdio') config = command.config;
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    problems.push(...err.message.replace(/^invalid configuration:\n {2}- /, '').split('\n  - '));
  }
  if (problems.length > 0 || !config) throw new CliError('CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return { help: undefined, config, options };
}

/** Runs a parsed build: 0 when it succeeded, 1 when the build itself failed (its report written). */
export async function runBuild(command: BuildCommand, client: TunnelClient, console: BuildConsole, signal?: AbortSignal): Promise<number> {
  const write = (text: string): void => console.stderr(text);
  try {
    const results = await runNativeBuild(command.options, client, console, signal);
    const index = await pushIndexIfSeveral(command.options.output, results, command.options.registryCredentials);
    await writeBuildRecords(command.options.output, results, index, loadedPlatformOf(command.options.output));
    if (command.options.progress === 'quiet') {
      // buildx: the image ID alone on stdout, for scripts.
      // With several platforms pushed, that is the index's digest (what --iidfile holds).
      if (index) console.stdout(`${index.digest}\n`);
      else {
        for (const r of results) {
          const id = r.exporterResponse['containerimage.config.digest'] ?? r.exporterResponse['containerimage.digest'];
          if (id) console.stdout(`${id}\n`);
        }
      }
    } else {
      write(resultReport(command.options.output, results, index));
    }
    return 0;
  } catch (err) {
    if (err instanceof BuildFailure) {
      write(err.report());
      return 1;
    }
    if (err instanceof BuildCancelled) {
      write(`ERROR: ${err.message}; its steps were cancelled on the builder\n`);
      // 128 + SIGINT, as a shell reports a command interrupted by Ctrl-C.
      return 130;
    }
    throw err;
  }
}
