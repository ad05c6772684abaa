// Protobuf's base-128 varint, for the few messages encoded by hand on hot paths (a DATA packet's
// header, a BytesMessage around a batch) so their payloads are never copied by an encoder.

/** Appends `value` (an unsigned 32-bit integer) to `out` as protobuf encodes it. */
export function appendVarint(out: number[], value: number): void {
  let v = value >>> 0;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
}
