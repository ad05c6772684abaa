// The agent's upstream dial against a real dockerd 20.10. It lives here rather than in agent/test
// because it needs the dockerd harness, and e2e test files run one at a time (docker0, CPU).
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { parseUpstream } from '../../agent/src/upstream.js';
import { listWorkers, readAll, startDockerd, tempDir, type Dockerd, type TempDir } from '../src/index.js';

describe('agent upstream against a real dockerd 20.10', () => {
  let dockerd: Dockerd;
  let scratch: TempDir;
  before(async () => {
    scratch = await tempDir('upstream');
    // No RUN steps here, so no bridge: docker0 stays free for whoever needs it.
    dockerd = await startDockerd({ flavor: '20.10', bridge: 'none' });
  });
  after(async () => {
    await dockerd?.stop();
    await scratch?.remove();
  });

  test('dockerd mode: the upgraded socket serves BuildKit ListWorkers', async () => {
    const upstream = parseUpstream(`dockerd:unix://${dockerd.socketPath}`);
    // Expose each upgraded connection on a socket of our own, as the agent does with streams.
    const clients = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      client.on('error', () => client.destroy());
      clients.add(client);
      client.once('close', () => clients.delete(client));
      upstream.dial().then(
        (up) => {
          up.removeAllListeners('error');
          up.on('error', () => client.destroy());
          pipeline(client, up, client, () => undefined);
        },
        () => client.destroy(),
      );
    });
    proxy.on('error', () => undefined);
    const proxyPath = path.join(scratch.path, 'buildkit.sock');
    await new Promise<void>((resolve) => proxy.listen(proxyPath, resolve));
    try {
      const workers = await listWorkers(`unix://${proxyPath}`);
      assert.ok(workers.length > 0, 'dockerd reports at least one worker');
      const platforms = workers.flatMap((w) => w.platforms);
      assert.ok(platforms.includes('linux/amd64'), `platforms ${JSON.stringify(platforms)} include linux/amd64`);
    } finally {
      for (const client of clients) client.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  test('engine mode: GET /_ping over the raw socket answers OK', async () => {
    const socket = await parseUpstream(`engine:unix://${dockerd.socketPath}`).dial();
    socket.removeAllListeners('error');
    const response = readAll(socket);
    socket.write('GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n');
    const text = (await response).toString('utf8');
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(text.endsWith('\r\n\r\nOK'), `body is OK: ${JSON.stringify(text)}`);
  });
});
