import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { AgentError } from '../src/agentError.js';
import { MAX_UPGRADE_RESPONSE_HEAD_BYTES } from '../src/dockerdUpgrade.js';
import { parseUpstream, type Upstream } from '../src/upstream.js';

describe('parseUpstream', () => {
  const good: Array<[string, Pick<Upstream, 'kind' | 'address' | 'endpoint'>]> = [
    ['buildkitd:unix:///run/buildkit/buildkitd.sock', { kind: 'buildkitd', address: 'unix:///run/buildkit/buildkitd.sock', endpoint: { transport: 'unix', path: '/run/buildkit/buildkitd.sock' } }],
    ['buildkitd:tcp://buildkit.internal:1234', { kind: 'buildkitd', address: 'tcp://buildkit.internal:1234', endpoint: { transport: 'tcp', host: 'buildkit.internal', port: 1234 } }],
    ['buildkitd:tcp://10.0.0.7:1234/', { kind: 'buildkitd', address: 'tcp://10.0.0.7:1234', endpoint: { transport: 'tcp', host: '10.0.0.7', port: 1234 } }],
    ['buildkitd:tcp://[::1]:1234', { kind: 'buildkitd', address: 'tcp://[::1]:1234', endpoint: { transport: 'tcp', host: '::1', port: 1234 } }],
    ['dockerd:unix:///var/run/docker.sock', { kind: 'dockerd', address: 'unix:///var/run/docker.sock', endpoint: { transport: 'unix', path: '/var/run/docker.sock' } }],
    ['dockerd:tcp://127.0.0.1:2375', { kind: 'dockerd', address: 'tcp://127.0.0.1:2375', endpoint: { transport: 'tcp', host: '127.0.0.1', port: 2375 } }],
    ['engine:unix:///var/run/docker.sock', { kind: 'engine', address: 'unix:///var/run/docker.sock', endpoint: { transport: 'unix', path: '/var/run/docker.sock' } }],
    ['engine:tcp://docker:2375', { kind: 'engine', address: 'tcp://docker:2375', endpoint: { transport: 'tcp', host: 'docker', port: 2375 } }],
  ];
  for (const [spec, expected] of good) {
    test(`accepts ${spec}`, () => {
      const upstream = parseUpstream(spec);
      assert.deepEqual({ kind: upstream.kind, address: upstream.address, endpoint: upstream.endpoint }, expected);
    });
  }

  const longPath = '/' + 'a'.repeat(120) + '.sock';
  // [input, a fragment the message must contain]
  const bad: Array<[string, string]> = [
    ['', 'KIND:ADDRESS'],
    ['/var/run/docker.sock', 'KIND:ADDRESS'],
    ['podman:unix:///run/podman.sock', '"podman"'],
    ['Dockerd:unix:///var/run/docker.sock', '"Dockerd"'],
    ['buildkitd:', 'expected unix:///absolute/path.sock or tcp://host:port'],
    ['buildkitd:/run/buildkit/buildkitd.sock', '"/run/buildkit/buildkitd.sock"'],
    ['buildkitd:unix://run/buildkit/buildkitd.sock', 'must be absolute'],
    ['dockerd:http://127.0.0.1:2375', '"http://127.0.0.1:2375"'],
    ['buildkitd:tcp://buildkit.internal', 'needs a host and a port'],
    ['buildkitd:tcp://:1234', '"tcp://:1234"'],
    ['buildkitd:tcp://buildkit.internal:0', 'got 0'],
    ['buildkitd:tcp://buildkit.internal:99999', 'not a valid URL'],
    ['buildkitd:tcp://user:secret@buildkit.internal:1234', 'nothing else'],
    ['buildkitd:tcp://buildkit.internal:1234/path', 'nothing else'],
    [`buildkitd:unix://${longPath}`, 'at most 107 bytes'],
  ];
  for (const [spec, fragment] of bad) {
    test(`rejects ${JSON.stringify(spec)}`, () => {
      assert.throws(
        () => parseUpstream(spec),
        (err: unknown) => {
          assert.ok(err instanceof AgentError);
          assert.equal(err.code, 'CONFIG_INVALID');
          assert.ok(err.message.includes(fragment), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`);
          return true;
        },
      );
    });
  }

  test('rejects a connect timeout that is not a positive integer', () => {
    assert.throws(() => parseUpstream('engine:unix:///var/run/docker.sock', { connectTimeoutMs: 0 }), { code: 'CONFIG_INVALID' });
  });
});

// A unix socket server in a temp dir whose connection handler the test chooses.
async function fakeServer(t: { after: (fn: () => Promise<void>) => void }, onConnection: (socket: net.Socket) => void): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sw-up-'));
  const socketPath = path.join(dir, 's.sock');
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  server.on('error', () => undefined);
  server.listen(socketPath);
  await once(server, 'listening');
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(dir, { recursive: true, force: true });
  });
  return socketPath;
}

function readHead(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n\r\n')) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
  });
}

function readAll(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

async function assertRejectsWith(promise: Promise<unknown>, code: string, fragments: string[]): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AgentError, `expected an AgentError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    for (const fragment of fragments) assert.ok(err.message.includes(fragment), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`);
    return true;
  });
}

describe('Upstream.dial against fake peers', () => {
  test('an unreachable unix socket gives UPSTREAM_UNAVAILABLE naming the address', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sw-up-'));
    try {
      const address = `unix://${dir}/nobody-listens.sock`;
      for (const kind of ['buildkitd', 'dockerd', 'engine']) {
        await assertRejectsWith(parseUpstream(`${kind}:${address}`).dial(), 'UPSTREAM_UNAVAILABLE', [address]);
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('a refused tcp port gives UPSTREAM_UNAVAILABLE naming the address', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await assertRejectsWith(parseUpstream(`buildkitd:tcp://127.0.0.1:${port}`).dial(), 'UPSTREAM_UNAVAILABLE', [`tcp://127.0.0.1:${port}`]);
  });

  test('a 200 instead of 101 gives UPSTREAM_PROTOCOL naming the status line', async (t) => {
    const socketPath = await fakeServer(t, (socket) => {
      void readHead(socket).then(() => socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nnot a dockerd'));
    });
    await assertRejectsWith(parseUpstream(`dockerd:unix://${socketPath}`).dial(), 'UPSTREAM_PROTOCOL', [
      '"HTTP/1.1 200 OK"',
      'expected "HTTP/1.1 101 Switching Protocols"',
      socketPath,
    ]);
  });

  test('an endless response head gives UPSTREAM_PROTOCOL', async (t) => {
    const socketPath = await fakeServer(t, (socket) => {
      void readHead(socket).then(() => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\n');
        socket.write(`X-Filler: ${'x'.repeat(MAX_UPGRADE_RESPONSE_HEAD_BYTES)}\r\n`);
      });
    });
    await assertRejectsWith(parseUpstream(`dockerd:unix://${socketPath}`).dial(), 'UPSTREAM_PROTOCOL', [`more than ${MAX_UPGRADE_RESPONSE_HEAD_BYTES} bytes`]);
  });

  test('a peer that hangs up before answering gives UPSTREAM_PROTOCOL', async (t) => {
    const socketPath = await fakeServer(t, (socket) => {
      void readHead(socket).then(() => socket.end('HTTP/1.1 101 Swi'));
    });
    await assertRejectsWith(parseUpstream(`dockerd:unix://${socketPath}`).dial(), 'UPSTREAM_PROTOCOL', ['closed the connection after 16 bytes']);
  });

  test('the upgrade sends the expected request and keeps the bytes that follow the 101', async (t) => {
    let request = '';
    const socketPath = await fakeServer(t, (socket) => {
      void readHead(socket).then((head) => {
        request = head;
        // The head's terminator straddles two writes, and HTTP/2 bytes share the second one.
        socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r');
        setImmediate(() => {
          socket.write('\nfirst-frames');
          setImmediate(() => socket.end('|later'));
        });
      });
    });
    const socket = await parseUpstream(`dockerd:unix://${socketPath}`).dial();
    assert.equal(socket.listenerCount('error'), 1, 'only the placeholder error listener is left');
    assert.equal(socket.listenerCount('readable'), 0);
    assert.equal(socket.listenerCount('data'), 0);
    socket.removeAllListeners('error');
    const rest = await readAll(socket);
    assert.equal(rest.toString('latin1'), 'first-frames|later');
    assert.equal(
      request,
      'POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n',
    );
  });

  const session = { id: 'abc123', name: 'slipway build ctx', sharedKey: 'k-1', methods: ['/moby.filesync.v1.FileSync/DiffCopy', '/grpc.health.v1.Health/Check'] };

  for (const kind of ['dockerd', 'engine'] as const) {
    test(`a session attachment (${kind}) sends dockerd's /session upgrade naming the session and every method, and keeps what follows the 101`, async (t) => {
      let request = '';
      const socketPath = await fakeServer(t, (socket) => {
        void readHead(socket).then((head) => {
          request = head;
          // On /session dockerd is the HTTP/2 client: its preface follows the 101.
          socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0');
        });
      });
      const socket = await parseUpstream(`${kind}:unix://${socketPath}`).dialSession(session);
      socket.removeAllListeners('error');
      assert.equal((await readAll(socket)).toString('latin1'), 'PRI * HTTP/2.0');
      assert.equal(
        request,
        'POST /session HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n' +
          'X-Docker-Expose-Session-Uuid: abc123\r\nX-Docker-Expose-Session-Name: slipway build ctx\r\nX-Docker-Expose-Session-Sharedkey: k-1\r\n' +
          'X-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.FileSync/DiffCopy\r\nX-Docker-Expose-Session-Grpc-Method: /grpc.health.v1.Health/Check\r\n\r\n',
      );
    });
  }

  test('a session attachment to a buildkitd is UNSUPPORTED, without connecting', async (t) => {
    let connections = 0;
    const socketPath = await fakeServer(t, () => connections++);
    await assertRejectsWith(parseUpstream(`buildkitd:unix://${socketPath}`).dialSession(session), 'UNSUPPORTED', ['buildkitd', 'no /session endpoint', 'Control.Session']);
    assert.equal(connections, 0);
  });

  test('dockerd refusing the /session upgrade gives UPSTREAM_PROTOCOL with its answer', async (t) => {
    const socketPath = await fakeServer(t, (socket) => {
      void readHead(socket).then(() => socket.end('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 42\r\n\r\n{"message":"session abc123 already exists"}'));
    });
    await assertRejectsWith(parseUpstream(`dockerd:unix://${socketPath}`).dialSession(session), 'UPSTREAM_PROTOCOL', ['/session upgrade', '500', 'already exists']);
  });

  test('a peer that never answers the upgrade runs into the connect timeout: UPSTREAM_UNAVAILABLE', async (t) => {
    const socketPath = await fakeServer(t, () => undefined);
    await assertRejectsWith(parseUpstream(`dockerd:unix://${socketPath}`, { connectTimeoutMs: 200 }).dial(), 'UPSTREAM_UNAVAILABLE', ['within 200 ms']);
  });

  test('aborting a dial rejects with the signal reason and closes the connection', async (t) => {
    const controller = new AbortController();
    const reason = new Error('test aborted the dial');
    let serverSide: net.Socket | undefined;
    const socketPath = await fakeServer(t, (socket) => {
      serverSide = socket;
      // Abort once the request has arrived: the dial is then waiting for the answer.
      void readHead(socket).then(() => controller.abort(reason));
    });
    await assert.rejects(parseUpstream(`dockerd:unix://${socketPath}`).dial(controller.signal), (err) => err === reason);
    assert.ok(serverSide !== undefined);
    if (!serverSide.readableEnded) await once(serverSide, 'end');
  });

  test('an already aborted signal rejects without connecting', async (t) => {
    let connections = 0;
    const socketPath = await fakeServer(t, () => {
      connections += 1;
    });
    const reason = new Error('already aborted');
    await assert.rejects(parseUpstream(`engine:unix://${socketPath}`).dial(AbortSignal.abort(reason)), (err) => err === reason);
    assert.equal(connections, 0);
  });
});
