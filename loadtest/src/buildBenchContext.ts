// The build bench's context, the same bytes for a given seed: many small files in nested folders
// plus a few large ones, a static busybox and a Dockerfile that copies all of it into the image and
// reads every file in a RUN step, so the whole context is uploaded and used.
import { createCipheriv, createHash } from 'node:crypto';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SeededRandom } from './seededRandom.js';

const BUSYBOX = '/bin/busybox';

export interface ContextShape {
  smallFiles: number;
  largeFiles: number;
  largeFileBytes: number;
}

export interface BenchContext {
  dir: string;
  files: number;
  bytes: number;
  /** A small file the incremental case rewrites. */
  touchedFile: string;
}

export const DOCKERFILE = [
  'FROM scratch',
  'COPY busybox /bin/busybox',
  'COPY . /ctx/',
  // Reads every byte of the copied context and records what it found.
  'RUN ["/bin/busybox","sh","-c","cd /ctx && /bin/busybox find . -type f | /bin/busybox wc -l > /count.txt && /bin/busybox find . -type f -exec /bin/busybox cat {} + | /bin/busybox md5sum >> /count.txt"]',
  '',
].join('\n');

/** Pseudo-random bytes from AES-CTR keyed by the seed: fast, and the same for the same seed. */
function byteStream(seed: number, label: string): (n: number) => Buffer {
  const key = createHash('sha256').update(`${seed}:${label}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (n) => cipher.update(Buffer.alloc(n));
}

export async function makeBenchContext(dir: string, seed: number, shape: ContextShape): Promise<BenchContext> {
  const random = new SeededRandom(seed);
  const bytesOf = byteStream(seed, 'content');
  let files = 0;
  let bytes = 0;
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'Dockerfile'), DOCKERFILE);
  await copyFile(BUSYBOX, path.join(dir, 'busybox'));
  await writeFile(path.join(dir, '.dockerignore'), '*.tmp\nscratch/\n');
  // A folder and a file .dockerignore leaves out: their bytes never leave the machine.
  await mkdir(path.join(dir, 'scratch'));
  await writeFile(path.join(dir, 'scratch', 'ignored.bin'), bytesOf(1024 * 1024));
  await writeFile(path.join(dir, 'notes.tmp'), 'ignored\n');
  // src/<a>/<b>/<c>/file: 10 x 10 x 10 leaf folders of up to 10 files each for the default 10,000.
  let touchedFile = '';
  for (let i = 0; i < shape.smallFiles; i++) {
    const folder = path.join(dir, 'src', `m${i % 10}`, `p${Math.floor(i / 10) % 10}`, `q${Math.floor(i / 100) % 10}`);
    if (i < 1000) await mkdir(folder, { recursive: true });
    const size = 200 + random.int(4 * 1024 - 200);
    // Text-like content (hex of random bytes), as source files are.
    const content = bytesOf(Math.ceil(size / 2)).toString('hex').slice(0, size);
    const file = path.join(folder, `f${Math.floor(i / 1000)}.${i % 3 === 0 ? 'ts' : i % 3 === 1 ? 'json' : 'md'}`);
    await writeFile(file, content);
    if (i === 0) touchedFile = file;
    files++;
    bytes += size;
  }
  await mkdir(path.join(dir, 'assets'), { recursive: true });
  for (let i = 0; i < shape.largeFiles; i++) {
    await writeFile(path.join(dir, 'assets', `blob${String(i).padStart(2, '0')}.bin`), bytesOf(shape.largeFileBytes));
    files++;
    bytes += shape.largeFileBytes;
  }
  return { dir, files, bytes, touchedFile };
}
