// The bench upstream's wire protocol. The first byte of a connection selects what the server
// does with the rest of it:
//   'E' echo:     every later byte comes back; the server half-closes when the client does.
//   'U' upload:   every later byte is discarded and counted; when the client half-closes, the
//                 server answers with the count as an 8-byte big-endian integer and ends, so the
//                 client can check that every byte it sent arrived.
//   'D' download: the next 8 bytes (big-endian) are a byte count; the server sends that many
//                 bytes and ends.

export const Mode = {
  echo: 0x45, // 'E'
  upload: 0x55, // 'U'
  download: 0x44, // 'D'
} as const;

export const COUNT_BYTES = 8;

export function encodeCount(count: number): Buffer {
  const b = Buffer.alloc(COUNT_BYTES);
  b.writeBigUInt64BE(BigInt(count));
  return b;
}

export function decodeCount(b: Buffer): number {
  const value = b.readBigUInt64BE(0);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`byte count ${value} is beyond 2^53`);
  return Number(value);
}

export function downloadRequest(count: number): Buffer {
  return Buffer.concat([Buffer.from([Mode.download]), encodeCount(count)]);
}
