import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { pipeline } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { CliError, type CliErrorCode } from '../../cli/src/cliError.js';
import { dialGateway, dialThroughProxy, MAX_PROXY_RESPONSE_HEAD_BYTES } from '../../cli/src/connectTunnel.js';
import { proxyFor } from '../../cli/src/proxySettings.js';
import { startSquid, type Squid } from '../src/squid.js';

const USER = 'alice';
const PASSWORD = 'p@ss:w0rd/ü';
const TIMEOUT_MS = 10_000;

interface EchoServer {
  readonly server: net.Server;
  readonly port: number;
  // Client-side ports of every connection the server accepted.
  readonly peerPorts: Set<number>;
  readonly open: Set<net.Socket>;
}

let squid: Squid;
let echo: EchoServer;
let tlsEcho: EchoServer;
let tlsCa: Buffer;
let certDir: string;
const cleanups: Array<() => Promise<unknown>> = [];

before(async () => {
  squid = await startSquid({ users: { [USER]: PASSWORD }, connectPorts: '1024-65535' });
  cleanups.push(() => squid.stop());

  echo = await listenEcho(net.createServer());
  cleanups.push(() => closeServer(echo));

  certDir = await mkdtemp(path.join(os.tmpdir(), 'slipway-tls-'));
  cleanups.push(() => rm(certDir, { recursive: true, force: true }));
  const keyFile = path.join(certDir, 'key.pem');
  const certFile = path.join(certDir, 'cert.pem');
  const made = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-keyout', keyFile, '-out', certFile,
  ], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  tlsCa = await readFile(certFile);
  const tlsServer = tls.createServer({ key: await readFile(keyFile), cert: tlsCa, ALPNProtocols: ['h2', 'http/1.1'] });
  tlsEcho = await listenEcho(tlsServer, 'secureConnection');
  cleanups.push(() => closeServer(tlsEcho));
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

test('through squid with the right credentials, bytes reach the gateway and come back intact', async () => {
  const socket = await dialGateway({
    env: { HTTPS_PROXY: squid.url(USER, PASSWORD) },
    host: '127.0.0.1',
    port: echo.port,
    timeoutMs: TIMEOUT_MS,
  });
  socket.on('error', () => {});
  try {
    const payload = randomBytes(512 * 1024);
    const echoed = readExactly(socket, payload.length);
    socket.write(payload);
    assert.ok((await echoed).equals(payload));
    // The echo server's peer is squid, not us.
    assert.equal(echo.peerPorts.has(socket.localPort ?? -1), false);
  } finally {
    socket.destroy();
  }
  // squid logs a tunnel when it ends; seeing it here shows the NO_PROXY test's log check can fail.
  await eventually(async () => (await squid.accessLog()).includes(`CONNECT 127.0.0.1:${echo.port} `));
});

test('TLS with ALPN h2 runs end to end over the CONNECT tunnel', async () => {
  const raw = await dialGateway({
    env: { https_proxy: squid.url(USER, PASSWORD) },
    host: '127.0.0.1',
    port: tlsEcho.port,
    timeoutMs: TIMEOUT_MS,
  });
  const secure = tls.connect({ socket: raw, servername: 'localhost', ca: tlsCa, ALPNProtocols: ['h2'] });
  secure.on('error', () => {});
  try {
    await once(secure, 'secureConnect');
    assert.equal(secure.alpnProtocol, 'h2');
    assert.equal(secure.authorized, true);
    const payload = randomBytes(64 * 1024);
    const echoed = readExactly(secure, payload.length);
    secure.write(payload);
    assert.ok((await echoed).equals(payload));
  } finally {
    secure.destroy();
  }
});

test('squid rejecting wrong credentials is PROXY_AUTH naming the proxy, not the password', async () => {
  await assert.rejects(
    dialGateway({
      env: { HTTPS_PROXY: squid.url(USER, 'wrong-password') },
      host: '127.0.0.1',
      port: echo.port,
      timeoutMs: TIMEOUT_MS,
    }),
    (err: unknown) =>
      isCliError(err, 'PROXY_AUTH') &&
      err.message.includes(`proxy 127.0.0.1:${squid.port}`) &&
      err.message.includes('rejected the credentials') &&
      !err.message.includes('wrong-password') &&
      !err.message.includes(String(echo.port)),
  );
});

test('squid demanding credentials that were not given is PROXY_AUTH saying none were given', async () => {
  await assert.rejects(
    dialGateway({ env: { HTTPS_PROXY: squid.url() }, host: '127.0.0.1', port: echo.port, timeoutMs: TIMEOUT_MS }),
    (err: unknown) =>
      isCliError(err, 'PROXY_AUTH') &&
      err.message.includes(`proxy 127.0.0.1:${squid.port}`) &&
      err.message.includes('none were given'),
  );
});

test('squid refusing the target port is PROXY_FAILED quoting its status line', async () => {
  await assert.rejects(
    dialGateway({ env: { HTTPS_PROXY: squid.url(USER, PASSWORD) }, host: '127.0.0.1', port: 25, timeoutMs: TIMEOUT_MS }),
    (err: unknown) =>
      isCliError(err, 'PROXY_FAILED') &&
      err.message.includes(`proxy 127.0.0.1:${squid.port} refused CONNECT 127.0.0.1:25`) &&
      err.message.includes('"HTTP/1.1 403 Forbidden"'),
  );
});

test('a proxy that is down is PROXY_FAILED naming the proxy, without its credentials', async () => {
  const port = await closedPort();
  await assert.rejects(
    dialGateway({
      env: { HTTPS_PROXY: `http://${USER}:secret@127.0.0.1:${port}` },
      host: '127.0.0.1',
      port: echo.port,
      timeoutMs: TIMEOUT_MS,
    }),
    (err: unknown) =>
      isCliError(err, 'PROXY_FAILED') &&
      err.message.startsWith(`could not connect to proxy 127.0.0.1:${port}: `) &&
      err.message.includes('ECONNREFUSED') &&
      !err.message.includes('secret'),
  );
});

test('a NO_PROXY match connects directly, bypassing squid', async () => {
  const direct = await listenEcho(net.createServer());
  try {
    const env = { HTTPS_PROXY: squid.url(USER, PASSWORD), NO_PROXY: `example.com, 127.0.0.0/8:${direct.port}` };
    const socket = await dialGateway({ env, host: '127.0.0.1', port: direct.port, timeoutMs: TIMEOUT_MS });
    socket.on('error', () => {});
    try {
      const echoed = readExactly(socket, 5);
      socket.write('hello');
      assert.equal((await echoed).toString(), 'hello');
      // The echo server's peer is this very socket.
      assert.equal(direct.peerPorts.has(socket.localPort ?? -1), true);
    } finally {
      socket.destroy();
    }
    assert.equal((await squid.accessLog()).includes(`127.0.0.1:${direct.port}`), false);
  } finally {
    await closeServer(direct);
  }
});

test('a direct connection that fails is GATEWAY_UNREACHABLE naming the gateway', async () => {
  const port = await closedPort();
  await assert.rejects(
    dialGateway({ env: {}, host: '127.0.0.1', port, timeoutMs: TIMEOUT_MS }),
    (err: unknown) => isCliError(err, 'GATEWAY_UNREACHABLE') && err.message.includes(`gateway 127.0.0.1:${port}`),
  );
});

// The cases below need a proxy that misbehaves on purpose, which squid will not do.

test('CONNECT carries the authority and credentials, and bytes after the 2xx head are kept', async () => {
  // Ending right away means lost bytes fail the read instead of hanging it.
  const fake = await fakeProxy((socket) => socket.end('HTTP/1.0 200 Connection established\r\nX-A: b\r\n\r\nearly bytes'));
  try {
    const socket = await dialGateway({
      env: { HTTPS_PROXY: `http://bob:pw@127.0.0.1:${fake.port}` },
      host: '::1',
      port: 8443,
      timeoutMs: TIMEOUT_MS,
    });
    socket.on('error', () => {});
    try {
      assert.equal((await readExactly(socket, 11)).toString(), 'early bytes');
    } finally {
      socket.destroy();
    }
    assert.equal(
      fake.heads[0],
      `CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\nProxy-Authorization: Basic ${Buffer.from('bob:pw').toString('base64')}`,
    );
  } finally {
    await fake.close();
  }
});

test('a 407 offering only non-Basic schemes says so', async () => {
  const fake = await fakeProxy((socket) =>
    socket.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\nProxy-Authenticate: NTLM\r\n\r\n'),
  );
  try {
    await assert.rejects(
      dialThroughProxy({ proxy: proxyAt(fake.port), host: 'gw.test', port: 443, timeoutMs: TIMEOUT_MS }),
      (err: unknown) => isCliError(err, 'PROXY_AUTH') && err.message.includes('it offers Negotiate, NTLM; only Basic is supported'),
    );
  } finally {
    await fake.close();
  }
});

test('an oversized response head is PROXY_FAILED', async () => {
  const fake = await fakeProxy((socket) =>
    socket.write(`HTTP/1.1 200 OK\r\nX-Big: ${'x'.repeat(MAX_PROXY_RESPONSE_HEAD_BYTES)}\r\n\r\n`),
  );
  try {
    await assert.rejects(
      dialThroughProxy({ proxy: proxyAt(fake.port), host: 'gw.test', port: 443, timeoutMs: TIMEOUT_MS }),
      (err: unknown) => isCliError(err, 'PROXY_FAILED') && err.message.includes(`over ${MAX_PROXY_RESPONSE_HEAD_BYTES} bytes`),
    );
  } finally {
    await fake.close();
  }
});

test('an answer that is not HTTP is PROXY_FAILED quoting it', async () => {
  const fake = await fakeProxy((socket) => socket.write('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
  try {
    await assert.rejects(
      dialThroughProxy({ proxy: proxyAt(fake.port), host: 'gw.test', port: 443, timeoutMs: TIMEOUT_MS }),
      (err: unknown) => isCliError(err, 'PROXY_FAILED') && err.message.includes('"SSH-2.0-OpenSSH_9.2", expected an HTTP/1.x status line'),
    );
  } finally {
    await fake.close();
  }
});

test('a proxy that hangs up before answering is PROXY_FAILED', async () => {
  const fake = await fakeProxy((socket) => socket.end());
  try {
    await assert.rejects(
      dialThroughProxy({ proxy: proxyAt(fake.port), host: 'gw.test', port: 443, timeoutMs: TIMEOUT_MS }),
      (err: unknown) =>
        isCliError(err, 'PROXY_FAILED') &&
        err.message === `proxy 127.0.0.1:${fake.port} closed the connection before answering CONNECT gw.test:443`,
    );
  } finally {
    await fake.close();
  }
});

test('a proxy that never answers hits the deadline as PROXY_FAILED and the connection is closed', async () => {
  const fake = await fakeProxy(() => {});
  try {
    await assert.rejects(
      dialThroughProxy({ proxy: proxyAt(fake.port), host: 'gw.test', port: 443, timeoutMs: 200 }),
      (err: unknown) =>
        isCliError(err, 'PROXY_FAILED') &&
        err.message === `proxy 127.0.0.1:${fake.port} did not answer CONNECT gw.test:443 within 200 ms`,
    );
    await fake.allClosed();
  } finally {
    await fake.close();
  }
});

test('aborting rejects with the signal reason and closes the connection', async () => {
  const controller = new AbortController();
  const fake = await fakeProxy(() => controller.abort(new Error('user pressed ^C')));
  try {
    await assert.rejects(
      dialThroughProxy({ proxy: proxyAt(fake.port), host: 'gw.test', port: 443, signal: controller.signal, timeoutMs: TIMEOUT_MS }),
      { message: 'user pressed ^C' },
    );
    await fake.allClosed();
    await assert.rejects(
      dialGateway({ env: {}, host: '127.0.0.1', port: echo.port, signal: controller.signal, timeoutMs: TIMEOUT_MS }),
      { message: 'user pressed ^C' },
    );
  } finally {
    await fake.close();
  }
});

function isCliError(err: unknown, code: CliErrorCode): err is CliError {
  if (!(err instanceof CliError)) return false;
  assert.equal(err.code, code, err.message);
  return true;
}

function proxyAt(port: number) {
  const proxy = proxyFor({ HTTPS_PROXY: `http://127.0.0.1:${port}` }, 'https://gw.test');
  assert.ok(proxy);
  return proxy;
}

async function listenEcho(server: net.Server, event = 'connection'): Promise<EchoServer> {
  const peerPorts = new Set<number>();
  const open = new Set<net.Socket>();
  server.on(event, (socket: net.Socket) => {
    socket.on('error', () => {});
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    if (socket.remotePort !== undefined) peerPorts.add(socket.remotePort);
    pipeline(socket, socket, () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port, peerPorts, open };
}

async function closeServer(echoServer: EchoServer): Promise<void> {
  for (const socket of echoServer.open) socket.destroy();
  await new Promise<void>((resolve) => echoServer.server.close(() => resolve()));
}

// Accepts connections, reads one request head each, and hands the socket to `answer`.
async function fakeProxy(answer: (socket: net.Socket) => void) {
  const heads: string[] = [];
  const open = new Set<net.Socket>();
  let onAllClosed: (() => void) | undefined;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    open.add(socket);
    socket.on('close', () => {
      open.delete(socket);
      if (open.size === 0) onAllClosed?.();
    });
    let text = '';
    let answered = false;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\r\n\r\n');
      if (end >= 0 && !answered) {
        answered = true;
        heads.push(text.slice(0, end));
        answer(socket);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    heads,
    allClosed: () =>
      open.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => (onAllClosed = resolve)),
    close: async () => {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function readExactly(socket: net.Socket, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= length) {
        done();
        resolve(Buffer.concat(chunks).subarray(0, length));
      }
    };
    const onEnd = (): void => {
      done();
      reject(new Error(`stream ended after ${received} of ${length} bytes`));
    };
    const done = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      socket.pause();
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
  });
}

async function eventually(condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, 'condition not met before the deadline');
    await sleep(50);
  }
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
