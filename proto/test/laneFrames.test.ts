import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LaneFrameParser, LaneFrameType, LaneProtocolError, laneControlFrame, laneDataHeader, laneFrameHeader, LANE_MAX_CONTROL_BYTES } from '../src/laneFrames.js';

function collect(): { parser: LaneFrameParser; seen: Array<[string, string]> } {
  const seen: Array<[string, string]> = [];
  const parser = new LaneFrameParser({
    data: (bytes) => seen.push(['DATA', bytes.toString()]),
    control: (type, payload) => seen.push([String(type), payload.toString()]),
  });
  return { parser, seen };
}

const stream = Buffer.concat([
  laneControlFrame(LaneFrameType.OPEN, { streamId: 's1', project: 'p', platform: 'linux/amd64' }),
  laneDataHeader(11),
  Buffer.from('hello world'),
  laneDataHeader(0),
  laneFrameHeader(LaneFrameType.END, 0),
  laneControlFrame(LaneFrameType.ERROR, { code: 'UPSTREAM_FAILED', message: 'gone' }),
]);

test('frames come out the same however the bytes are cut', () => {
  const whole = collect();
  whole.parser.push(stream);
  const joined = (seen: Array<[string, string]>): Array<[string, string]> => {
    // DATA may arrive in pieces; join consecutive pieces to compare.
    const out: Array<[string, string]> = [];
    for (const [kind, text] of seen) {
      const last = out[out.length - 1];
      if (kind === 'DATA' && last?.[0] === 'DATA') last[1] += text;
      else out.push([kind, text]);
    }
    return out;
  };
  assert.deepEqual(joined(whole.seen), [
    [String(LaneFrameType.OPEN), '{"streamId":"s1","project":"p","platform":"linux/amd64"}'],
    ['DATA', 'hello world'],
    [String(LaneFrameType.END), ''],
    [String(LaneFrameType.ERROR), '{"code":"UPSTREAM_FAILED","message":"gone"}'],
  ]);
  for (let size = 1; size <= 7; size++) {
    const cut = collect();
    for (let i = 0; i < stream.length; i += size) {
      cut.parser.push(stream.subarray(i, i + size));
    }
    assert.deepEqual(joined(cut.seen), joined(whole.seen), `cut every ${size} bytes`);
    assert.equal(cut.parser.atFrameBoundary, true);
  }
});

test('DATA payloads are handed on as views of the chunk read, not copies', () => {
  const chunk = Buffer.concat([laneDataHeader(4), Buffer.from('abcd')]);
  let piece: Buffer | undefined;
  new LaneFrameParser({ data: (b) => (piece = b), control: () => {} }).push(chunk);
  assert.ok(piece);
  assert.equal(piece.buffer, chunk.buffer);
  assert.equal(piece.toString(), 'abcd');
});

test('a frame cut off mid-way leaves the parser off a frame boundary', () => {
  const { parser } = collect();
  parser.push(Buffer.concat([laneDataHeader(10), Buffer.from('abc')]));
  assert.equal(parser.atFrameBoundary, false);
  parser.push(Buffer.from('defghij'));
  assert.equal(parser.atFrameBoundary, true);
});

test('an unknown frame type and an oversized control frame are protocol errors naming what arrived', () => {
  assert.throws(() => collect().parser.push(Buffer.from([7, 0, 0, 0, 0])), (err: Error) => err instanceof LaneProtocolError && /unknown lane frame type 7/.test(err.message));
  assert.throws(
    () => collect().parser.push(laneFrameHeader(LaneFrameType.OPEN, LANE_MAX_CONTROL_BYTES + 1)),
    (err: Error) => err instanceof LaneProtocolError && new RegExp(`carries ${LANE_MAX_CONTROL_BYTES + 1} bytes`).test(err.message),
  );
});
