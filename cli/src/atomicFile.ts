import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Replaces a file atomically with exactly this mode from its first byte: written under a
 * temporary name beside it (never through a file planted there: 'wx'), synced, then renamed over
 * the old one. Throws the underlying error; the temporary file is gone either way.
 */
export function writeFileAtomic(file: string, content: string | Buffer, mode: number): void {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.slipway-${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = fs.openSync(temp, 'wx', mode);
    try {
      // The mode given to open is reduced by the umask, never widened; this makes it exact.
      fs.fchmodSync(fd, mode);
      fs.writeFileSync(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
}
