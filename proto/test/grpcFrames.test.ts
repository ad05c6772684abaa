import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GrpcFrameDecoder, encodeGrpcFrame } from '../src/grpcFrames.js';

test('messages split across chunks and packed together come out whole', () => {
  const a = Buffer.from('first message');
  const b = Buffer.alloc(70_000, 7);
  const wire = Buffer.concat([encodeGrpcFrame(a), encodeGrpcFrame(b), encodeGrpcFrame(Buffer.alloc(0))]);
  const decoder = new GrpcFrameDecoder(1 << 20);
  const out: Buffer[] = [];
  for (let i = 0; i < wire.length; i += 1000) out.push(...decoder.push(wire.subarray(i, i + 1000)));
  assert.equal(out.length, 3);
  assert.ok(out[0]!.equals(a));
  assert.ok(out[1]!.equals(b));
  assert.equal(out[2]!.length, 0);
});

test('oversized and compressed messages are refused with the reason', () => {
  const big = Buffer.alloc(5);
  big.writeUInt32BE(2_000_000, 1);
  assert.throws(() => new GrpcFrameDecoder(1024).push(big), /2000000 bytes exceeds the limit of 1024/);
  const compressed = Buffer.from([1, 0, 0, 0, 0]);
  assert.throws(() => new GrpcFrameDecoder(1024).push(compressed), /compressed/);
});
