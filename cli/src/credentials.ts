// What `slipway login` stores: the gateway, the CA to verify it with, and the tokens for it, in
// $XDG_CONFIG_HOME/slipway/credentials.json (~/.config/slipway/ by default).
//
// The tokens are bearer credentials, so the file is treated as ssh treats a private key: written
// only ever with mode 0600 in a 0700 directory, replaced atomically (a crash leaves the old file or
// the new one, never half of one, and never a moment with wider permissions), and refused when
// others can read it, since by then the tokens may have leaked and quietly using them would hide it.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './atomicFile.js';
import type { Env } from '@slipway/proto';
import { CliError } from './cliError.js';

export interface StoredCredentials {
  /** https:// URL of the gateway the tokens belong to. */
  gateway: string;
  /** Absolute path of the PEM CA to verify it with. */
  caCert?: string;
  /** Project token (`slipway login`). */
  token?: string;
  /** Admin token (`slipway login --admin`). */
  adminToken?: string;
}

const MAX_FILE_BYTES = 64 * 1024;
const FIELDS = ['gateway', 'caCert', 'token', 'adminToken'] as const;

/** Where the credentials live, or undefined when the environment names no home for them. */
export function credentialsPath(env: Env): string | undefined {
  // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
  const xdg = env['XDG_CONFIG_HOME'];
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'slipway', 'credentials.json');
  const home = env['HOME'];
  if (home && path.isAbsolute(home)) return path.join(home, '.config', 'slipway', 'credentials.json');
  return undefined;
}

/**
 * Reads the stored credentials; undefined when there are none. A file others can read or write,
 * owned by someone else, or not in the expected form is refused with what to do about it.
 */
export function readCredentials(file: string, uid: number | undefined = process.getuid?.()): StoredCredentials | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError('CONFIG_INVALID', `cannot read the stored credentials ${file}: ${(err as Error).message}`, { cause: err });
  }
  let text: string;
  try {
    // Checked on the open file, not the path, so that what is checked is what is read.
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new CliError('CONFIG_INVALID', `the stored credentials ${file} are not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw new CliError(
        'CONFIG_INVALID',
        `the stored credentials ${file} are accessible to other users (mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}); ` +
          `the tokens in it may have leaked: revoke them if others could read it, then run: chmod 600 ${file}`,
      );
    }
    if (uid !== undefined && stat.uid !== uid) {
      throw new CliError('CONFIG_INVALID', `the stored credentials ${file} belong to another user (uid ${stat.uid}); remove the file or run slipway login again as yourself`);
    }
    if (stat.size > MAX_FILE_BYTES) throw new CliError('CONFIG_INVALID', `the stored credentials ${file} are larger than ${MAX_FILE_BYTES} bytes; expected a small JSON file`);
    text = fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
  return parseCredentials(text, file);
}

function parseCredentials(text: string, file: string): StoredCredentials {
  const fix = `run slipway logout, then slipway login`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CliError('CONFIG_INVALID', `the stored credentials ${file} are not JSON; ${fix}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CliError('CONFIG_INVALID', `the stored credentials ${file} are not a JSON object; ${fix}`);
  const record = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const field of FIELDS) {
    const v = record[field];
    if (v !== undefined && (typeof v !== 'string' || v === '')) problems.push(`${field} is not a non-empty string`);
  }
  if (record['gateway'] === undefined) problems.push('gateway is missing');
  if (problems.length > 0) throw new CliError('CONFIG_INVALID', `the stored credentials ${file} are damaged (${problems.join('; ')}); ${fix}`);
  const stored: StoredCredentials = { gateway: record['gateway'] as string };
  for (const field of ['caCert', 'token', 'adminToken'] as const) {
    const v = record[field];
    if (typeof v === 'string') stored[field] = v;
  }
  return stored;
}

/** Replaces the stored credentials atomically; the file is 0600 from its first byte, in a 0700 directory. */
export function writeCredentials(file: string, credentials: StoredCredentials): void {
  const dir = path.dirname(file);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // mkdir leaves an existing directory as it was; this one is ours and holds only secrets.
    const stat = fs.statSync(dir);
    if ((stat.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
  } catch (err) {
    throw new CliError('CONFIG_INVALID', `cannot prepare ${dir} for the credentials: ${(err as Error).message}`, { cause: err });
  }
  const ordered: Record<string, string> = {};
  for (const field of FIELDS) {
    const v = credentials[field];
    if (v !== undefined) ordered[field] = v;
  }
  try {
    writeFileAtomic(file, `${JSON.stringify(ordered, null, 2)}\n`, 0o600);
  } catch (err) {
    throw new CliError('CONFIG_INVALID', `cannot write the credentials to ${file}: ${(err as Error).message}`, { cause: err });
  }
  syncDirectory(dir);
}

/** Removes the stored credentials; false when there were none. */
export function removeCredentials(file: string): boolean {
  try {
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new CliError('CONFIG_INVALID', `cannot remove the stored credentials ${file}: ${(err as Error).message}`, { cause: err });
  }
  syncDirectory(path.dirname(file));
  return true;
}

// The rename is only durable once the directory entry is; some filesystems refuse to fsync a
// directory, and then there is nothing more to do.
function syncDirectory(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // best effort
  }
}
