// The Docker CLI's config.json, changed in one place only: `aliases.builder`, which makes plain
// `docker build` run buildx (what `docker buildx install` sets). Everything else in the file (auths,
// contexts, other aliases) is kept, in its order, and the file is written as the Docker CLI writes
// it (tab-indented JSON), so a later `docker login` rewriting it changes nothing of ours.
import { CliError } from './cliError.js';

export const BUILDER_ALIAS = 'buildx';

type ConfigObject = Record<string, unknown>;

export function parseDockerConfig(text: string | undefined, file: string): ConfigObject {
  if (text === undefined || text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CliError('CONFIG_INVALID', `${file} is not valid JSON (${(err as Error).message}); the Docker CLI cannot read it either: fix or remove it, then run this again`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CliError('CONFIG_INVALID', `${file} is not a JSON object; fix or remove it, then run this again`);
  return value as ConfigObject;
}

export function builderAliasOf(config: ConfigObject): string | undefined {
  const aliases = config['aliases'];
  if (typeof aliases !== 'object' || aliases === null) return undefined;
  const builder = (aliases as Record<string, unknown>)['builder'];
  return typeof builder === 'string' ? builder : undefined;
}

export function currentContextOf(config: ConfigObject): string | undefined {
  return typeof config['currentContext'] === 'string' ? config['currentContext'] : undefined;
}

/** The file's new text with the builder alias set, or undefined when it is set already (nothing to write). */
export function withBuilderAlias(text: string | undefined, file: string): string | undefined {
  const config = parseDockerConfig(text, file);
  if (builderAliasOf(config) === BUILDER_ALIAS) return undefined;
  const aliases = typeof config['aliases'] === 'object' && config['aliases'] !== null ? { ...(config['aliases'] as Record<string, unknown>) } : {};
  aliases['builder'] = BUILDER_ALIAS;
  return serialize({ ...config, aliases });
}

/** The file's new text without the builder alias (and without `aliases` if that leaves it empty); undefined when there is nothing to remove. */
export function withoutBuilderAlias(text: string, file: string): string | undefined {
  const config = parseDockerConfig(text, file);
  if (builderAliasOf(config) !== BUILDER_ALIAS) return undefined;
  const aliases = { ...(config['aliases'] as Record<string, unknown>) };
  delete aliases['builder'];
  const next: ConfigObject = { ...config, aliases };
  if (Object.keys(aliases).length === 0) delete next['aliases'];
  return serialize(next);
}

function serialize(config: ConfigObject): string {
  return JSON.stringify(config, null, '\t');
}
