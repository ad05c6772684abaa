// Build contexts that need no registry: images are FROM scratch with a static busybox copied in.
import { chmod, copyFile, mkdir, open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HarnessError } from './harnessError.js';

/** From Debian's busybox-static (scripts/install-deps.sh). */
export const BUSYBOX_PATH = '/bin/busybox';

export const DEFAULT_DOCKERFILE = [
  'FROM scratch',
  'COPY busybox /bin/busybox',
  'RUN ["/bin/busybox","sh","-c","/bin/busybox mkdir -p /out && echo built > /out/hello.txt"]',
  '',
].join('\n');

export interface BusyboxContextOptions {
  /** Dockerfile text; default DEFAULT_DOCKERFILE. */
  dockerfile?: string;
  /** More files, keyed by path relative to the context (sub-folders are created). */
  files?: Record<string, string>;
}

export interface BusyboxContext {
  /** The context folder (what `docker build` gets as its last argument). */
  readonly dir: string;
  readonly dockerfilePath: string;
  /** Path of the busybox copy inside the context. */
  readonly busyboxPath: string;
}

const PT_INTERP = 3;

// A dynamically linked busybox (Debian's `busybox` package instead of `busybox-static`) cannot run
// in a FROM scratch image; the build would fail with a confusing "no such file or directory".
async function assertStaticElf(file: string): Promise<void> {
  const fh = await open(file, 'r').catch((err: unknown) => {
    throw new HarnessError(
      'NOT_AVAILABLE',
      `expected a static busybox at ${file} (apt-get install busybox-static), cannot open it: ${String(err)}`,
      { cause: err },
    );
  });
  try {
    const header = Buffer.alloc(64);
    await fh.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2 || header[5] !== 1) {
      throw new HarnessError('NOT_AVAILABLE', `expected ${file} to be a 64-bit little-endian ELF executable`);
    }
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const table = Buffer.alloc(phentsize * phnum);
    await fh.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) {
      if (table.readUInt32LE(i * phentsize) === PT_INTERP) {
        throw new HarnessError(
          'NOT_AVAILABLE',
          `expected a statically linked busybox at ${file}, found a dynamically linked one (install busybox-static)`,
        );
      }
    }
  } finally {
    await fh.close();
  }
}

function insideContext(dir: string, rel: string): string {
  const target = path.resolve(dir, rel);
  if (path.isAbsolute(rel) || !target.startsWith(dir + path.sep)) {
    throw new HarnessError('INVALID_ARGUMENT', `expected a path inside the build context, got ${JSON.stringify(rel)}`);
  }
  return target;
}

/** Writes a build context into `dir` (created if needed): busybox, a Dockerfile and `files`. */
export async function makeBusyboxContext(dir: string, opts: BusyboxContextOptions = {}): Promise<BusyboxContext> {
  const root = path.resolve(dir);
  await assertStaticElf(BUSYBOX_PATH);
  await mkdir(root, { recursive: true });
  const busyboxPath = path.join(root, 'busybox');
  await copyFile(BUSYBOX_PATH, busyboxPath);
  await chmod(busyboxPath, 0o755);
  const dockerfilePath = path.join(root, 'Dockerfile');
  await writeFile(dockerfilePath, opts.dockerfile ?? DEFAULT_DOCKERFILE);
  for (const [rel, content] of Object.entries(opts.files ?? {})) {
    const target = insideContext(root, rel);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, content);
  }
  return { dir: root, dockerfilePath, busyboxPath };
}
