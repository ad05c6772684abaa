import { Writable } from 'node:stream';

// The build's HTTP/2 connection to BuildKit writes each frame as a header chunk and a payload
// chunk, in batches. Handed to the tunnel one by one, every 9-byte header costs a full trip
// through the tunnel stream's machinery; handed over as one buffer per batch, a 16 KiB frame
// costs a memcpy. This Writable sits in front of the tunnel's writable side and does that.

/** Largest buffer handed to the target at once. */
const MAX_BATCH_BYTES = 1024 * 1024;

export function batchedWrites(target: Writable): Writable {
  const hand = (buffer: Buffer, callback: (error?: Error | null) => void): void => {
    if (target.write(buffer)) {
      callback();
      return;
    }
    const settle = (error?: Error): void => {
      target.off('drain', onDrain);
      target.off('close', onClose);
      callback(error);
    };
    const onDrain = (): void => settle();
    const onClose = (): void => settle(new Error('the tunnel closed while the build was writing to it'));
    target.on('drain', onDrain);
    target.on('close', onClose);
  };
  const out = new Writable({
    highWaterMark: MAX_BATCH_BYTES,
    write(chunk: Buffer, _encoding, callback) {
      hand(chunk, callback);
    },
    writev(chunks: Array<{ chunk: Buffer }>, callback) {
      const batches: Buffer[][] = [[]];
      let size = 0;
      for (const { chunk } of chunks) {
        if (size + chunk.length > MAX_BATCH_BYTES && size > 0) {
          batches.push([]);
          size = 0;
        }
        batches.at(-1)!.push(chunk);
        size += chunk.length;
      }
      const next = (i: number): void => {
        if (i === batches.length) {
          callback();
          return;
        }
        const batch = batches[i]!;
        hand(batch.length === 1 ? batch[0]! : Buffer.concat(batch), (error) => (error ? callback(error) : next(i + 1)));
      };
      next(0);
    },
    final(callback) {
      target.end();
      callback();
    },
  });
  target.on('error', (error: Error) => out.destroy(error));
  target.on('close', () => out.destroy());
  return out;
}
