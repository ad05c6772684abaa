import { lstat, open, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { PathPatterns } from './pathPatterns.js';
import { GRPC_NOT_FOUND, GrpcStatusError } from './grpcStatusError.js';
import type { ServerCall } from './sessionServer.js';
import { PACKET_DATA, PACKET_ERR, PACKET_FIN, PACKET_REQ, PACKET_STAT, decodePacket, encodePacket, kindOf, wireStatOf, type WireStat } from './fsutilPacket.js';

// The local folders a build may read (the context, the Dockerfile's folder), served to BuildKit
// through FileSync.DiffCopy as fsutil's sender. BuildKit names the folder (dir-name) and says
// which paths it wants (include-patterns, exclude-patterns: the frontend turns .dockerignore
// into the latter), so filtering happens here and ignored files never leave the machine.

const CHUNK_BYTES = 1024 * 1024;

export interface ContextEntry {
  stat: WireStat;
  absPath: string;
}

/** Byte order of names, as Go sorts them: fsutil's receiver checks the order of what it gets. */
function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export async function listContext(root: string, includes: PathPatterns, excludes: PathPatterns): Promise<ContextEntry[]> {
  const entries: ContextEntry[] = [];
  const walk = async (absDir: string, relDir: string): Promise<void> => {
    const names = (await readdir(absDir)).sort(byBytes);
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const abs = path.join(absDir, name);
      const st = await lstat(abs, { bigint: true });
      const isDir = st.isDirectory();
      const included = includes.empty || includes.matches(rel);
      if (!included && !(isDir && includes.mayHoldMatches(rel, false))) continue;
      const excluded = excludes.matches(rel);
      if (excluded && !(isDir && excludes.hasExclusions && excludes.mayHoldMatches(rel, true))) continue;
      const linkname = st.isSymbolicLink() ? await readlink(abs) : '';
      entries.push({ stat: wireStatOf(rel, st, linkname), absPath: abs });
      if (!isDir) continue;
      const mark = entries.length;
      await walk(abs, rel);
      // A folder walked only for what it might hold goes only if something in it went.
      if ((excluded || !included) && entries.length === mark) entries.pop();
    }
  };
  await walk(root, '');
  return entries;
}

// Paths BuildKit wants with symlinks resolved (the Dockerfile may be a link): older BuildKit asks
// for the Dockerfile and .dockerignore this way only, without include-patterns.
async function followed(root: string, paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    out.push(p);
    let current = p;
    for (let hops = 0; hops < 40; hops++) {
      const target = await readlink(path.join(root, current)).catch(() => undefined);
      if (target === undefined) break;
      current = path.posix.normalize(path.posix.join(path.posix.dirname(current), target)).replace(/^(\.\.\/)+|^\/+/, '');
      out.push(current);
    }
  }
  return out;
}

export class ContextSource {
  private readonly dirs = new Map<string, string>();

  /** Makes `dir` readable by BuildKit under `name` (`context`, `dockerfile`). */
  add(name: string, dir: string): void {
    this.dirs.set(name, dir);
  }

  /** Serves one FileSync.DiffCopy call. */
  async serve(call: ServerCall): Promise<void> {
    const name = call.metadata('dir-name')[0] ?? '';
    const root = this.dirs.get(name);
    if (root === undefined) throw new GrpcStatusError(GRPC_NOT_FOUND, `no access allowed to dir "${name}"`, 'FileSync');
    let entries: ContextEntry[];
    try {
      const includes = [...call.metadata('include-patterns'), ...(await followed(root, call.metadata('followpaths')))];
      entries = await listContext(root, new PathPatterns(includes), new PathPatterns(call.metadata('exclude-patterns')));
    } catch (err) {
      await call.send(encodePacket({ type: PACKET_ERR, data: Buffer.from((err as Error).message) }));
      throw err;
    }
    const files = new Map<number, string>();
    const sending = (async () => {
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!;
        if (kindOf(entry.stat.mode) === 'file') files.set(i, entry.absPath);
        await call.send(encodePacket({ type: PACKET_STAT, stat: entry.stat }));
      }
      await call.send(encodePacket({ type: PACKET_STAT }));
    })();
    let sendFailure: unknown;
    sending.catch((err: unknown) => (sendFailure = err));
    for await (const raw of call.messages()) {
      const packet = decodePacket(raw);
      if (packet.type === PACKET_REQ) {
        await sending;
        const file = files.get(packet.ID);
        if (file === undefined) throw new Error(`BuildKit asked for file ${packet.ID}, which is not a file this session listed`);
        files.delete(packet.ID);
        await this.sendFile(call, packet.ID, file);
      } else if (packet.type === PACKET_FIN) {
        await sending;
        await call.send(encodePacket({ type: PACKET_FIN }));
        return;
      } else if (packet.type === PACKET_ERR) {
        throw new Error(`BuildKit failed to receive ${name}: ${packet.data.toString()}`);
      }
    }
    if (sendFailure) throw sendFailure;
    throw new Error(`BuildKit ended the transfer of ${name} without finishing it`);
  }

  private async sendFile(call: ServerCall, id: number, file: string): Promise<void> {
    const handle = await open(file, 'r');
    try {
      for (;;) {
        const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
        const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, null);
        if (bytesRead === 0) break;
        await call.send(encodePacket({ type: PACKET_DATA, ID: id, data: buffer.subarray(0, bytesRead) }));
      }
    } finally {
      await handle.close();
    }
    await call.send(encodePacket({ type: PACKET_DATA, ID: id }));
  }
}
