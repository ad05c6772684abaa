import { createHash } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { closeSync, lstatSync, openSync, readdirSync, readFileSync, readSync, readlinkSync } from 'node:fs';
import { open, readlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PathPatterns } from './pathPatterns.js';
import { GRPC_NOT_FOUND, GrpcStatusError } from './grpcStatusError.js';
import type { ServerCall } from './sessionServer.js';
import { PACKET_ERR, PACKET_FIN, PACKET_REQ, PACKET_STAT, dataPacketHeader, decodePacket, encodePacket, kindOf, statPacket, wireStatOf, type WireStat } from './fsutilPacket.js';

// The local folders a build may read (the context, the Dockerfile's folder), served to BuildKit
// through FileSync.DiffCopy as fsutil's sender. BuildKit names the folder (dir-name) and says
// which paths it wants (include-patterns, exclude-patterns: the frontend turns .dockerignore
// into the latter), so filtering happens here and ignored files never leave the machine.

/** One read of a large file: few system calls per megabyte; it goes out as PACKET_DATA_BYTES packets. */
const CHUNK_BYTES = 1024 * 1024;
/**
 * Files read and sent at once: BuildKit asks for many at a time, and each costs a few file-system
 * round trips. As many as fsutil's own sender (4): more, with large files, was seen to make older
 * BuildKit (Engine 20.10) drop the session mid-transfer.
 */
const FILES_IN_FLIGHT = 4;
/**
 * A DATA packet carries at most this much of a file, as fsutil's own sender does (32 KiB). BuildKit
 * asks for a packet, writes it to disk, then asks for the next, and a grpc-go receiver lets a
 * message larger than its window in only once it is asked for: with 1 MiB packets every packet
 * waited a round trip through the tunnel to be let in, nothing arrived while the last one was
 * being written, and dockerd spent more CPU than on `docker build`'s whole upload. Measured with
 * the build bench (cold, 224 MB, the session on its own stream): 1 MiB packets 1.46x-1.54x
 * Docker's wall time, 32 KiB 1.00x-1.34x (README, Benchmark).
 */
const PACKET_DATA_BYTES = 32 * 1024;
/** How many entries the walk lists between turns it gives the event loop. */
const ENTRIES_BETWEEN_YIELDS = 2000;
/** Files below this size are read whole and synchronously (see sendFile). */
const SMALL_FILE_BYTES = 256 * 1024;

/** A small file's bytes, read to its end even if it grew since it was listed. */
function readSmallFile(file: string, size: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (let want = size + 1; ; want = SMALL_FILE_BYTES) {
      const buffer = Buffer.allocUnsafe(want);
      const read = readSync(fd, buffer, 0, want, null);
      if (read > 0) chunks.push(buffer.subarray(0, read));
      total += read;
      if (read < want) break;
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}


/** Counters of each DiffCopy served, for benchmarks (published only when someone subscribes). */
const uploadChannel = channel('slipway:build:upload');
const now = (): number => performance.timeOrigin + performance.now();

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
  let nextYield = ENTRIES_BETWEEN_YIELDS;
  const walk = async (absDir: string, relDir: string): Promise<void> => {
    // Folders are read and their entries stat'ed synchronously: a readdir or lstat of cached
    // inodes costs microseconds, the promise API's round trip through libuv's pool many times
    // that (a walk of 10,000 files went from 0.5 s to well under 0.1 s). The event loop still
    // gets its turn every few thousand entries, so a huge context does not starve the session.
    if (entries.length >= nextYield) {
      nextYield = entries.length + ENTRIES_BETWEEN_YIELDS;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const names = readdirSync(absDir).sort(byBytes);
    const stats = names.map((name) => {
      const abs = path.join(absDir, name);
      const st = lstatSync(abs, { bigint: true });
      return { st, linkname: st.isSymbolicLink() ? readlinkSync(abs) : '' };
    });
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const { st, linkname } = stats[i]!;
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const isDir = st.isDirectory();
      const included = includes.empty || includes.matches(rel);
      if (!included && !(isDir && includes.mayHoldMatches(rel, false))) continue;
      const excluded = excludes.matches(rel);
      if (excluded && !(isDir && excludes.hasExclusions && excludes.mayHoldMatches(rel, true))) continue;
      const abs = path.join(absDir, name);
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

/**
 * The session's shared key for a context folder: the same for every build of that folder from
 * this machine and user, so BuildKit diffs the new upload against the last one and only changed
 * files travel (an incremental build sends what changed, as docker build does). The machine's
 * identity is part of it because BuildKit trusts matching stats (size, mtime, mode) to mean
 * matching contents: another machine's folder of the same path must not match.
 */
export function contextSharedKey(contextDir: string): string {
  let machine = '';
  try {
    machine = readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    // No machine id (not systemd, not Linux): the host name and user still tell machines apart.
  }
  const user = process.getuid?.() ?? os.userInfo().username;
  return createHash('sha256').update(`slipway:${machine}:${os.hostname()}:${user}:${path.resolve(contextDir)}`).digest('hex');
}

interface UploadCounters {
  filesSent: number;
  bytesSent: number;
  packets: number;
}

export class ContextSource {
  private readonly dirs = new Map<string, string>();

  /** Makes `dir` readable by BuildKit under `name` (`context`, `dockerfile`). */
  add(name: string, dir: string): void {
    this.dirs.set(name, dir);
  }

  /** Serves one FileSync.DiffCopy call. */
  async serve(call: ServerCall): Promise<void> {
    const startedAt = now();
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
    const listedAt = now();
    const counters: UploadCounters = { filesSent: 0, bytesSent: 0, packets: 0 };
    // BuildKit names files by their index in the listing; only regular files can be asked for.
    const files = new Map<number, ContextEntry>();
    const sending = (async () => {
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!;
        if (kindOf(entry.stat.mode) === 'file') files.set(i, entry);
        await call.send(statPacket(entry.stat));
      }
      await call.send(encodePacket({ type: PACKET_STAT }));
      counters.packets += entries.length + 1;
    })();
    // A failure while files are in flight must end the call at once: BuildKit would wait for them forever.
    let failed: (err: unknown) => void = () => {};
    const failure = new Promise<never>((_, reject) => (failed = reject));
    failure.catch(() => {});
    sending.catch((err: unknown) => failed(err));
    const inFlight = new Set<Promise<void>>();
    const messages = call.messages()[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await Promise.race([messages.next(), failure]);
        if (next.done) break;
        const packet = decodePacket(next.value);
        if (packet.type === PACKET_REQ) {
          // Served at once, while the listing may still be going out: BuildKit asks for a file as
          // soon as it has its stat, and older BuildKit (Engine 20.10) reads the rest of the
          // listing only slowly while files it asked for are outstanding. Waiting for the whole
          // listing first held a 10,000-file context's upload at a trickle for seconds. A file is
          // in `files` before its stat goes out, so anything BuildKit can ask for is there.
          const entry = files.get(packet.ID);
          if (entry === undefined) throw new Error(`BuildKit asked for file ${packet.ID}, which is not a file this session listed`);
          files.delete(packet.ID);
          if (inFlight.size >= FILES_IN_FLIGHT) await Promise.race([Promise.race(inFlight), failure]);
          const sent = this.sendFile(call, packet.ID, entry, counters).then(
            () => void inFlight.delete(sent),
            (err: unknown) => failed(err),
          );
          inFlight.add(sent);
        } else if (packet.type === PACKET_FIN) {
          await Promise.race([sending, failure]);
          await Promise.race([Promise.all(inFlight), failure]);
          await call.send(encodePacket({ type: PACKET_FIN }));
          if (uploadChannel.hasSubscribers) uploadChannel.publish({ dir: name, startedAt, listedAt, finishedAt: now(), entries: entries.length, ...counters });
          return;
        } else if (packet.type === PACKET_ERR) {
          throw new Error(`BuildKit failed to receive ${name}: ${packet.data.toString()}`);
        }
      }
    } finally {
      // Stop reading files nobody will take; what is in flight ends on its own.
      files.clear();
    }
    await Promise.race([sending, failure]);
    throw new Error(`BuildKit ended the transfer of ${name} without finishing it`);
  }

  private async sendFile(call: ServerCall, id: number, entry: ContextEntry, counters: UploadCounters): Promise<void> {
    const size = Number(entry.stat.size);
    if (size < SMALL_FILE_BYTES) {
      // Read at once, synchronously: for a file this small the promise API's bookkeeping (a
      // FileHandle, three trips through libuv's pool) costs far more than the read itself.
      await sendData(call, id, readSmallFile(entry.absPath, size), counters);
    } else {
      const handle = await open(entry.absPath, 'r');
      try {
        // One byte more than the listed size: a short read then says the file ended, without a
        // second read (a file that grew since it was listed is read on to its new end, as fsutil does).
        let want = Math.min(size + 1, CHUNK_BYTES);
        for (;;) {
          const buffer = Buffer.allocUnsafe(want);
          const { bytesRead } = await handle.read(buffer, 0, want, null);
          if (bytesRead === 0) break;
          await sendData(call, id, buffer.subarray(0, bytesRead), counters);
          if (bytesRead < want) break;
          want = CHUNK_BYTES;
        }
      } finally {
        await handle.close();
      }
    }
    await call.send(dataPacketHeader(id, 0));
    counters.filesSent++;
    counters.packets++;
  }
}

/** A file's bytes as DATA packets of at most PACKET_DATA_BYTES, each a view of `data`, not a copy. */
async function sendData(call: ServerCall, id: number, data: Buffer, counters: UploadCounters): Promise<void> {
  for (let at = 0; at < data.length; at += PACKET_DATA_BYTES) {
    const piece = data.subarray(at, Math.min(data.length, at + PACKET_DATA_BYTES));
    await call.sendParts([dataPacketHeader(id, piece.length), piece]);
    counters.packets++;
  }
  counters.bytesSent += data.length;
}
