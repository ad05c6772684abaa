import { randomBytes } from 'node:crypto';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';

// A file of `export NAME=VALUE` lines for `source`. It carries a bearer token, so it is
// written 0600 and appears whole (rename), never half-written to a reader polling for it.

const SAFE = /^[A-Za-z0-9_./:@%+=,-]+$/;

export function shellQuote(value: string): string {
  return SAFE.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

export function renderEnvFile(comment: readonly string[], vars: Readonly<Record<string, string>>): string {
  const head = comment.map((line) => `# ${line}`.trimEnd());
  const body = Object.entries(vars).map(([name, value]) => `export ${name}=${shellQuote(value)}`);
  return `${[...head, ...body].join('\n')}\n`;
}

export async function writeSecretFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
    await chmod(tmp, 0o600); // Exactly this mode, whatever the umask.
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
