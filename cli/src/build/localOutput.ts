import { chmod, link, lutimes, mkdir, open, rm, symlink, utimes, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ServerCall } from './sessionServer.js';
import { PACKET_DATA, PACKET_ERR, PACKET_FIN, PACKET_REQ, PACKET_STAT, decodePacket, encodePacket, kindOf, unixPermOf, type WireStat } from './fsutilPacket.js';

// The `local` exporter's files, received through the session's FileSend.DiffCopy as fsutil's
// receiver and written under a folder. Paths come from the builder: each is checked to stay
// inside the folder before anything is written.

function timeOf(stat: WireStat): Date {
  return new Date(Number(BigInt(stat.modTime) / 1_000_000n));
}

export async function receiveLocal(call: ServerCall, dest: string): Promise<void> {
  const root = path.resolve(dest);
  await mkdir(root, { recursive: true });
  const inside = (rel: string): string => {
    const abs = path.resolve(root, rel);
    if (abs !== root && !abs.startsWith(`${root}${path.sep}`)) throw new Error(`the builder sent a path outside the output folder: ${rel}`);
    return abs;
  };
  const open_ = new Map<number, { handle: FileHandle; stat: WireStat; abs: string }>();
  const dirs: { abs: string; stat: WireStat }[] = [];
  const hardlinks: { abs: string; target: string }[] = [];
  let index = 0;
  let listed = false;
  const finishIfDone = async (): Promise<boolean> => {
    if (!listed || open_.size > 0) return false;
    await call.send(encodePacket({ type: PACKET_FIN }));
    return true;
  };
  let finSent = false;
  for await (const raw of call.messages()) {
    const packet = decodePacket(raw);
    switch (packet.type) {
      case PACKET_STAT: {
        if (packet.stat === null) {
          listed = true;
          if (!finSent) finSent = await finishIfDone();
          break;
        }
        const id = index++;
        const stat = packet.stat;
        const abs = inside(stat.path);
        const kind = kindOf(stat.mode);
        if (kind === 'dir') {
          await mkdir(abs, { recursive: true });
          dirs.push({ abs, stat });
        } else if (kind === 'symlink') {
          await rm(abs, { force: true });
          await symlink(stat.linkname, abs);
          await lutimes(abs, timeOf(stat), timeOf(stat)).catch(() => {});
        } else if (kind === 'file' && stat.linkname !== '') {
          hardlinks.push({ abs, target: inside(stat.linkname) });
        } else if (kind === 'file') {
          await rm(abs, { force: true });
          open_.set(id, { handle: await open(abs, 'w', 0o600), stat, abs });
          await call.send(encodePacket({ type: PACKET_REQ, ID: id }));
        }
        // Devices, pipes and sockets are not recreated by an unprivileged client.
        break;
      }
      case PACKET_DATA: {
        const file = open_.get(packet.ID);
        if (!file) throw new Error(`the builder sent data for file ${packet.ID}, which was not asked for`);
        if (packet.data.length > 0) {
          await file.handle.write(packet.data);
          break;
        }
        open_.delete(packet.ID);
        await file.handle.chmod(unixPermOf(file.stat.mode));
        await file.handle.close();
        await utimes(file.abs, timeOf(file.stat), timeOf(file.stat));
        if (!finSent) finSent = await finishIfDone();
        break;
      }
      case PACKET_FIN:
        break;
      case PACKET_ERR:
        throw new Error(`the builder failed to send the output: ${packet.data.toString()}`);
    }
  }
  for (const file of open_.values()) await file.handle.close();
  if (!finSent) throw new Error('the builder ended the output transfer before sending every file');
  for (const { abs, target } of hardlinks) {
    await rm(abs, { force: true });
    await link(target, abs);
  }
  // Folders last, deepest first: writing into them changed their times, and a read-only one
  // would have refused its files.
  for (const { abs, stat } of dirs.reverse()) {
    await chmod(abs, unixPermOf(stat.mode));
    await utimes(abs, timeOf(stat), timeOf(stat));
  }
}

/** The `tar` exporter's stream: plain bytes, appended to `file`. */
export async function receiveBytes(call: ServerCall, file: string, decode: (raw: Buffer) => Buffer): Promise<void> {
  const handle = await open(file, 'w', 0o644);
  try {
    for await (const raw of call.messages()) await handle.write(decode(raw));
  } finally {
    await handle.close();
  }
}
