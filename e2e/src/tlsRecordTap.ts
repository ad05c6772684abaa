// A TCP relay that notes the TLS records a client sends through it, without decrypting anything:
// each record's 5-byte header gives its content type and length. Put between a client and the
// gateway, it shows how a client's writes were cut into records (one record per write, up to
// 16 KiB), which is how a test can tell that two frames left in one write.
import net from 'node:net';
import { once } from 'node:events';
import { pipeline } from 'node:stream';

export const TLS_APPLICATION_DATA = 23;

export interface TlsRecord {
  contentType: number;
  /** Length of the record's payload (encrypted: the plaintext plus the AEAD's tag and type byte). */
  length: number;
}

export interface TlsRecordTap {
  readonly port: number;
  /** Records sent by clients, in order, over every connection the tap carried. */
  readonly fromClient: readonly TlsRecord[];
  close(): Promise<void>;
}

export async function startTlsRecordTap(targetPort: number, targetHost = '127.0.0.1'): Promise<TlsRecordTap> {
  const fromClient: TlsRecord[] = [];
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket): net.Socket => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    return socket;
  };
  const server = net.createServer((inbound) => {
    track(inbound);
    const outbound = track(net.connect({ host: targetHost, port: targetPort }));
    let pending = Buffer.alloc(0);
    inbound.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const length = pending.readUInt16BE(3);
        if (pending.length < 5 + length) break;
        fromClient.push({ contentType: pending[0]!, length });
        pending = pending.subarray(5 + length);
      }
    });
    pipeline(inbound, outbound, () => {});
    pipeline(outbound, inbound, () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    fromClient,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
