// `slipway configure-docker [--uninstall]`: the Docker side of Slipway in one command.
//
// It writes, directly and in buildx's own formats (buildxStore.ts), a buildx builder with the
// remote driver and one node per platform, each pointing at a socket of the proxy daemon; makes
// it the global selection; sets the Docker CLI's builder alias so plain `docker build` runs buildx;
// and installs the `docker slipway` CLI plugin. Every file it touches is recorded with what was
// there before, so that --uninstall puts back exactly that. Running it again changes nothing.
//
// Uninstall restores a file byte for byte when it is still as configure-docker left it. A file
// changed since (a `docker login` rewriting config.json, a `docker buildx use` of another builder)
// is not rolled back over that change: only Slipway's part is taken out of it, or it is left be.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './atomicFile.js';
import type { Env, Platform } from '@slipway/proto';
import { CliError } from './cliError.js';
import { BUILDER_NAME, type DockerLocations } from './dockerLocations.js';
import { buildxCurrentJson, buildxInstanceJson, dockerEndpointKey, parseBuildxCurrent } from './buildxStore.js';
import { builderAliasOf, currentContextOf, parseDockerConfig, withBuilderAlias, withoutBuilderAlias } from './dockerCliConfig.js';
import { pluginScript } from './dockerCliPlugin.js';
import type { SlipwayProgram } from './slipwayProgram.js';

type FileRole = 'instance' | 'current' | 'config' | 'plugin';

interface FileRecord {
  role: FileRole;
  path: string;
  /** base64 of what was there before configure-docker first touched it; null: no file. */
  before: string | null;
  beforeMode: number | null;
  /** base64 of what configure-docker left there. */
  after: string;
}

export interface SetupRecord {
  version: 1;
  dockerConfigDir: string;
  buildxDir: string;
  builder: string;
  files: FileRecord[];
  /** Directories configure-docker created, parents first. */
  createdDirs: string[];
  /** Files buildx makes for a builder as it uses it, and whether each existed before. */
  buildxState: Array<{ path: string; existedBefore: boolean }>;
}

export interface SetupChange {
  role: FileRole;
  path: string;
  what: 'created' | 'updated' | 'unchanged';
}

export interface SetupOptions {
  locations: DockerLocations;
  platforms: readonly Platform[];
  env: Env;
  program: SlipwayProgram;
  /** Driver options of every node (undefined: none; buildx before 0.14 refuses default-load). */
  driverOpts: Record<string, string> | undefined;
}

/** The files as configure-docker wants them, given what is there now. */
export function desiredFiles(options: SetupOptions, configText: string | undefined): Array<{ role: FileRole; path: string; content: string | undefined; mode: number }> {
  const { locations } = options;
  const config = parseDockerConfig(configText, locations.configJson);
  const nodes = options.platforms.map((platform) => ({
    name: `${BUILDER_NAME}-${platform.split('/')[1]}`,
    endpoint: `unix://${locations.daemon.sockets[platform]}`,
    platform,
    driverOpts: options.driverOpts,
  }));
  return [
    { role: 'instance', path: locations.instanceFile, content: buildxInstanceJson(BUILDER_NAME, nodes), mode: 0o600 },
    { role: 'current', path: locations.currentFile, content: buildxCurrentJson(dockerEndpointKey(options.env, currentContextOf(config)), BUILDER_NAME), mode: 0o600 },
    // undefined: the alias is set already, nothing to write.
    { role: 'config', path: locations.configJson, content: withBuilderAlias(configText, locations.configJson), mode: 0o600 },
    { role: 'plugin', path: locations.pluginFile, content: pluginScript(options.program), mode: 0o755 },
  ];
}

export function readSetupRecord(locations: DockerLocations): SetupRecord | undefined {
  try {
    const record = JSON.parse(fs.readFileSync(locations.recordFile, 'utf8')) as SetupRecord;
    return record.version === 1 && Array.isArray(record.files) ? record : undefined;
  } catch {
    return undefined;
  }
}

/** Writes what is not yet as it should be; returns what happened to each file. */
export function installDockerSetup(options: SetupOptions): SetupChange[] {
  const { locations } = options;
  const prior = readSetupRecord(locations);
  const record: SetupRecord = {
    version: 1,
    dockerConfigDir: locations.dockerConfigDir,
    buildxDir: locations.buildxDir,
    builder: BUILDER_NAME,
    files: [],
    createdDirs: [...(prior?.createdDirs ?? [])],
    buildxState: prior?.buildxState ?? buildxStatePaths(locations).map((p) => ({ path: p, existedBefore: fs.existsSync(p) })),
  };
  const configText = readText(locations.configJson);
  const changes: SetupChange[] = [];
  const planned = desiredFiles(options, configText);
  // The record goes first: a run cut short must still leave a way back.
  for (const file of planned) {
    const current = readBytes(file.path);
    const earlier = prior?.files.find((f) => f.path === file.path);
    const after = file.content === undefined ? current : Buffer.from(file.content);
    record.files.push({
      role: file.role,
      path: file.path,
      before: earlier ? earlier.before : current === null ? null : current.toString('base64'),
      beforeMode: earlier ? earlier.beforeMode : modeOf(file.path),
      after: (after ?? Buffer.alloc(0)).toString('base64'),
    });
  }
  for (const file of planned) for (const dir of missingDirs(path.dirname(file.path))) if (!record.createdDirs.includes(dir)) record.createdDirs.push(dir);
  writeAtomic(locations.recordFile, Buffer.from(`${JSON.stringify(record, null, 2)}\n`), 0o600);

  for (const file of planned) {
    const current = readBytes(file.path);
    if (file.content === undefined || (current !== null && current.equals(Buffer.from(file.content)) && modeOf(file.path) === file.mode)) {
      changes.push({ role: file.role, path: file.path, what: 'unchanged' });
      continue;
    }
    mkdirTracked(path.dirname(file.path), file.role === 'instance' || file.role === 'current' ? 0o700 : 0o755);
    // config.json keeps its mode (it may hold credentials); ours get theirs.
    writeAtomic(file.path, Buffer.from(file.content), file.role === 'config' ? (modeOf(file.path) ?? file.mode) : file.mode);
    changes.push({ role: file.role, path: file.path, what: current === null ? 'created' : 'updated' });
  }
  return changes;
}

export interface UninstallChange {
  path: string;
  what: 'restored' | 'removed' | 'slipway part removed' | 'left as changed since';
}

/** Puts back what configure-docker found; undefined when this Docker configuration has no record. */
export function uninstallDockerSetup(locations: DockerLocations): UninstallChange[] | undefined {
  const record = readSetupRecord(locations);
  if (record === undefined) return undefined;
  const changes: UninstallChange[] = [];
  for (const file of [...record.files].reverse()) {
    const current = readBytes(file.path);
    const before = file.before === null ? null : Buffer.from(file.before, 'base64');
    const untouched = current !== null && current.equals(Buffer.from(file.after, 'base64'));
    if (untouched || file.role === 'instance' || file.role === 'plugin') {
      // Ours (or as we left it): put back exactly what was there.
      if (before === null) {
        if (current !== null) {
          fs.rmSync(file.path, { force: true });
          changes.push({ path: file.path, what: 'removed' });
        }
      } else if (current === null || !current.equals(before) || modeOf(file.path) !== file.beforeMode) {
        writeAtomic(file.path, before, file.beforeMode ?? 0o600);
        changes.push({ path: file.path, what: 'restored' });
      }
      continue;
    }
    if (current === null) continue;
    if (file.role === 'config') {
      const hadAlias = before !== null && builderAliasOf(parseDockerConfig(before.toString('utf8'), file.path)) !== undefined;
      const without = hadAlias ? undefined : withoutBuilderAlias(current.toString('utf8'), file.path);
      if (without !== undefined) {
        writeAtomic(file.path, Buffer.from(without), modeOf(file.path) ?? 0o600);
        changes.push({ path: file.path, what: 'slipway part removed' });
      } else changes.push({ path: file.path, what: 'left as changed since' });
      continue;
    }
    // `current`: still selecting our builder means nobody chose another since.
    if (parseBuildxCurrent(current.toString('utf8'))?.name === BUILDER_NAME) {
      if (before === null) fs.rmSync(file.path, { force: true });
      else writeAtomic(file.path, before, file.beforeMode ?? 0o600);
      changes.push({ path: file.path, what: before === null ? 'removed' : 'restored' });
    } else changes.push({ path: file.path, what: 'left as changed since' });
  }
  for (const state of record.buildxState) {
    if (!state.existedBefore && fs.existsSync(state.path)) {
      fs.rmSync(state.path, { recursive: true, force: true });
      changes.push({ path: state.path, what: 'removed' });
    }
  }
  for (const dir of [...record.createdDirs].reverse()) {
    try {
      fs.rmdirSync(dir);
    } catch {
      // Not empty (something else lives there now) or gone: leave it.
    }
  }
  fs.rmSync(locations.recordFile, { force: true });
  return changes;
}

/** Whether another Docker configuration still uses the daemon (its record is in the same directory). */
export function otherSetups(locations: DockerLocations): string[] {
  try {
    return fs
      .readdirSync(locations.daemon.dir)
      .filter((f) => /^configure-docker-[0-9a-f]+\.json$/.test(f))
      .map((f) => path.join(locations.daemon.dir, f))
      .filter((f) => f !== locations.recordFile);
  } catch {
    return [];
  }
}

// What buildx itself keeps about a builder it has used: when it was last active, and its
// local state (build history references).
function buildxStatePaths(locations: DockerLocations): string[] {
  return [path.join(locations.buildxDir, 'activity', BUILDER_NAME), path.join(locations.buildxDir, 'refs', BUILDER_NAME)];
}

function missingDirs(dir: string): string[] {
  const missing: string[] = [];
  let at = dir;
  while (!fs.existsSync(at)) {
    missing.unshift(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  return missing;
}

function mkdirTracked(dir: string, mode: number): void {
  for (const missing of missingDirs(dir)) fs.mkdirSync(missing, { mode });
}

function readBytes(file: string): Buffer | null {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CliError('CONFIG_INVALID', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function readText(file: string): string | undefined {
  return readBytes(file)?.toString('utf8');
}

function modeOf(file: string): number | null {
  try {
    return fs.statSync(file).mode & 0o7777;
  } catch {
    return null;
  }
}

function writeAtomic(file: string, content: Buffer, mode: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    writeFileAtomic(file, content, mode);
  } catch (err) {
    throw new CliError('CONFIG_INVALID', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
}
