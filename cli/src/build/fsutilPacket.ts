import type { BigIntStats } from 'node:fs';
import { methodCodec } from './buildkitProtos.js';
import { appendVarint } from './protobufVarint.js';

// fsutil's Packet and Stat (see proto/moby/fsutil/types/wire.proto) and the translation of
// file modes between Node's stat (Unix st_mode) and Go's os.FileMode, which fsutil puts on the wire.

export const PACKET_STAT = 0;
export const PACKET_REQ = 1;
export const PACKET_DATA = 2;
export const PACKET_FIN = 3;
export const PACKET_ERR = 4;

export interface WireStat {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: string;
  modTime: string;
  linkname: string;
  devmajor: string;
  devminor: string;
  xattrs: Record<string, Buffer>;
}

export interface Packet {
  type: number;
  stat: WireStat | null;
  ID: number;
  data: Buffer;
}

const codec = methodCodec<Packet, Packet>('moby.filesync.v1.FileSync', 'DiffCopy');
export const encodePacket = (packet: Partial<Packet>): Buffer => codec.encodeRequest(packet as Packet);
export const decodePacket = (bytes: Buffer): Packet => codec.decodeRequest(bytes);

/**
 * The bytes of a DATA packet that come before its payload (type, ID, then the data field's tag and
 * length), as protobuf encodes them: the payload follows as it is, so file contents are never
 * copied into a packet. With an empty payload this is the whole end-of-file packet.
 */
export function dataPacketHeader(id: number, payloadBytes: number): Buffer {
  const out = [0x08, PACKET_DATA];
  if (id !== 0) {
    out.push(0x18);
    appendVarint(out, id);
  }
  if (payloadBytes > 0) {
    out.push(0x22);
    appendVarint(out, payloadBytes);
  }
  return Buffer.from(out);
}

/**
 * A STAT packet, encoded by hand as protobuf would (proto3: fields at their zero value left out).
 * A context of 10,000 files is listed in 10,000 of these, every build, incremental ones too: the
 * generic encoder's conversions of each object cost several times the encoding itself.
 */
export function statPacket(stat: WireStat): Buffer {
  const pathBytes = Buffer.from(stat.path);
  const linkBytes = Buffer.from(stat.linkname);
  const head: number[] = [];
  const tail: number[] = [];
  appendUint32Field(tail, 0x10, stat.mode);
  appendUint32Field(tail, 0x18, stat.uid);
  appendUint32Field(tail, 0x20, stat.gid);
  appendInt64Field(tail, 0x28, stat.size);
  appendInt64Field(tail, 0x30, stat.modTime);
  const xattrs = Object.entries(stat.xattrs).map(([name, value]) => {
    const key = Buffer.from(name);
    const entry: number[] = [0x0a];
    appendVarint(entry, key.length);
    const mid: number[] = [0x12];
    appendVarint(mid, value.length);
    const body = Buffer.concat([Buffer.from(entry), key, Buffer.from(mid), value]);
    const field: number[] = [0x52];
    appendVarint(field, body.length);
    return Buffer.concat([Buffer.from(field), body]);
  });
  const late: number[] = [];
  appendInt64Field(late, 0x40, stat.devmajor);
  appendInt64Field(late, 0x48, stat.devminor);
  const parts: Buffer[] = [];
  if (pathBytes.length > 0) {
    const p: number[] = [0x0a];
    appendVarint(p, pathBytes.length);
    parts.push(Buffer.from(p), pathBytes);
  }
  parts.push(Buffer.from(tail));
  if (linkBytes.length > 0) {
    const l: number[] = [0x3a];
    appendVarint(l, linkBytes.length);
    parts.push(Buffer.from(l), linkBytes);
  }
  parts.push(Buffer.from(late), ...xattrs);
  let statLength = 0;
  for (const part of parts) statLength += part.length;
  // Packet: type STAT is 0 (left out), then field 2, the Stat.
  head.push(0x12);
  appendVarint(head, statLength);
  return Buffer.concat([Buffer.from(head), ...parts], head.length + statLength);
}

function appendUint32Field(out: number[], tag: number, value: number): void {
  if (value === 0) return;
  out.push(tag);
  appendVarint(out, value);
}

/** An int64 field given as a decimal string (nanosecond times do not fit a double); nothing when 0. */
function appendInt64Field(out: number[], tag: number, decimal: string): void {
  if (decimal === '0' || decimal === '') return;
  out.push(tag);
  // Negative values go as their 64-bit two's complement, ten bytes, as protobuf sends them.
  let v = BigInt.asUintN(64, BigInt(decimal));
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

const GO_DIR = 2 ** 31;
const GO_SYMLINK = 2 ** 27;
const GO_DEVICE = 2 ** 26;
const GO_NAMED_PIPE = 2 ** 25;
const GO_SOCKET = 2 ** 24;
const GO_SETUID = 2 ** 23;
const GO_SETGID = 2 ** 22;
const GO_CHAR_DEVICE = 2 ** 21;
const GO_STICKY = 2 ** 20;
const GO_TYPE = GO_DIR | GO_SYMLINK | GO_DEVICE | GO_NAMED_PIPE | GO_SOCKET | GO_CHAR_DEVICE | 2 ** 19;

const S_IFMT = 0o170000;

export function goModeOf(unixMode: number): number {
  let mode = unixMode & 0o777;
  if (unixMode & 0o4000) mode += GO_SETUID;
  if (unixMode & 0o2000) mode += GO_SETGID;
  if (unixMode & 0o1000) mode += GO_STICKY;
  switch (unixMode & S_IFMT) {
    case 0o040000:
      return mode + GO_DIR;
    case 0o120000:
      return mode + GO_SYMLINK;
    case 0o010000:
      return mode + GO_NAMED_PIPE;
    case 0o140000:
      return mode + GO_SOCKET;
    case 0o020000:
      return mode + GO_DEVICE + GO_CHAR_DEVICE;
    case 0o060000:
      return mode + GO_DEVICE;
    default:
      return mode;
  }
}

export type WireKind = 'dir' | 'symlink' | 'file' | 'other';

export function kindOf(goMode: number): WireKind {
  // Above 2^31 bitwise operators go negative: compare with unsigned views.
  const mode = goMode >>> 0;
  if ((mode & GO_DIR) >>> 0 !== 0) return 'dir';
  if ((mode & GO_SYMLINK) !== 0) return 'symlink';
  if (((mode & GO_TYPE) >>> 0) === 0) return 'file';
  return 'other';
}

/** Unix permission bits (with setuid/setgid/sticky) of a Go FileMode. */
export function unixPermOf(goMode: number): number {
  const mode = goMode >>> 0;
  let perm = mode & 0o777;
  if (mode & GO_SETUID) perm |= 0o4000;
  if (mode & GO_SETGID) perm |= 0o2000;
  if (mode & GO_STICKY) perm |= 0o1000;
  return perm;
}

export function wireStatOf(relPath: string, st: BigIntStats, linkname: string): WireStat {
  const isFile = st.isFile();
  return {
    path: relPath,
    mode: goModeOf(Number(st.mode)),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: isFile ? String(st.size) : '0',
    modTime: String(st.mtimeNs),
    linkname,
    devmajor: '0',
    devminor: '0',
    xattrs: {},
  };
}
