// A throwaway redis-server per test run, and just enough RESP to talk to it without a client library.
import net from 'node:net';
import { HarnessError } from './harnessError.js';
import { spawnManaged, tempDir, type ManagedProcess } from './processes.js';

const REDIS_SERVER = 'redis-server';
const DEFAULT_START_TIMEOUT_MS = 15_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 5_000;
const PING_RETRY_MS = 50;
// redis cannot listen on port 0, so the port is picked first and can be taken in between.
const BIND_ATTEMPTS = 3;

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly process: ManagedProcess;
  /** Stops redis-server and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** Extra redis-server arguments, e.g. ['--cluster-enabled', 'yes']. */
  extraArgs?: readonly string[];
  startTimeoutMs?: number;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') {
        server.close();
        reject(new HarnessError('PROTOCOL', `expected a TCP address from listen(0), got ${String(addr)}`));
        return;
      }
      server.close(() => resolve(addr.port));
    });
  });
}

/** Starts redis-server on a free 127.0.0.1 port without persistence and waits until it answers PING. */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  let lastError: unknown;
  for (let attempt = 1; attempt <= BIND_ATTEMPTS; attempt++) {
    const dir = await tempDir('redis');
    const port = await freePort();
    const proc = spawnManaged(
      REDIS_SERVER,
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--save', '',
        '--appendonly', 'no',
        '--daemonize', 'no',
        '--dir', dir.path,
        ...(opts.extraArgs ?? []),
      ],
      { name: `redis:${port}`, cwd: dir.path },
    );
    let stopped: Promise<void> | null = null;
    const stop = (): Promise<void> => {
      stopped ??= (async () => {
        await proc.stop('SIGTERM');
        await dir.remove();
      })();
      return stopped;
    };
    try {
      await waitForPong(port, proc, timeoutMs);
      return { port, url: `redis://127.0.0.1:${port}`, process: proc, stop };
    } catch (err) {
      lastError = err;
      await stop();
      const lostRace = /Address already in use/i.test(proc.output());
      if (!lostRace) throw err;
    }
  }
  throw lastError;
}

async function waitForPong(port: number, proc: ManagedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (proc.exitStatus) {
      const s = proc.exitStatus;
      throw new HarnessError(
        s.error ? 'SPAWN_FAILED' : 'PROCESS_EXITED',
        `redis-server on port ${port} ${s.error ? `could not start: ${s.error.message}` : `exited (code ${s.code}, signal ${s.signal})`} ` +
          `before answering PING.\n--- output ---\n${proc.output()}`,
      );
    }
    try {
      const reply = await redisCommand(port, ['PING'], { timeoutMs: 1_000 });
      if (reply === 'PONG') return;
      lastError = new HarnessError('PROTOCOL', `expected PONG, got ${JSON.stringify(reply)}`);
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new HarnessError(
        'TIMEOUT',
        `redis-server on port ${port} did not answer PING within ${timeoutMs} ms (last: ${String(lastError)}).\n` +
          `--- output ---\n${proc.output()}`,
      );
    }
    await new Promise<void>((resolve) => setTimeout(resolve, PING_RETRY_MS));
  }
}

// ---------------------------------------------------------------------------------------------
// RESP

/** A decoded RESP2 reply. Error replies become rejections, not values. */
export type RespValue = string | number | null | RespValue[];

interface Parsed {
  value: RespValue | RespErrorReply;
  next: number;
}

class RespErrorReply {
  constructor(readonly message: string) {}
}

/** Encodes a command as a RESP array of bulk strings. */
export function encodeCommand(args: readonly string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.from(a, 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Parses one reply at `at`; null when `buf` does not hold all of it yet. */
function parseReply(buf: Buffer, at: number): Parsed | null {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[at] ?? 0);
  const line = buf.toString('utf8', at + 1, eol);
  const after = eol + 2;
  switch (type) {
    case '+':
      return { value: line, next: after };
    case '-':
      return { value: new RespErrorReply(line), next: after };
    case ':':
      return { value: Number(line), next: after };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next: after };
      if (buf.length < after + len + 2) return null;
      return { value: buf.toString('utf8', after, after + len), next: after + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: after };
      const items: RespValue[] = [];
      let pos = after;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, pos);
        if (item === null) return null;
        if (item.value instanceof RespErrorReply) {
          throw new HarnessError('PROTOCOL', `redis replied with an error inside an array: ${item.value.message}`);
        }
        items.push(item.value);
        pos = item.next;
      }
      return { value: items, next: pos };
    }
    default:
      throw new HarnessError('PROTOCOL', `expected a RESP type byte (+ - : $ *), got ${JSON.stringify(type)}`);
  }
}

/**
 * Sends one command on a fresh connection to 127.0.0.1:port and returns the decoded reply.
 * A redis error reply rejects with PROTOCOL and redis's message.
 */
export function redisCommand(
  port: number,
  args: readonly string[],
  opts: { timeoutMs?: number; host?: string } = {},
): Promise<RespValue> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  return new Promise<RespValue>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const socket = net.connect({ port, host: opts.host ?? '127.0.0.1' });
    const finish = (err: Error | null, value?: RespValue): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value ?? null);
    };
    const timer = setTimeout(
      () => finish(new HarnessError('TIMEOUT', `redis ${args[0] ?? ''} on port ${port}: no reply within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('error', (err) => finish(err));
    socket.on('connect', () => socket.write(encodeCommand(args)));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      try {
        const parsed = parseReply(buf, 0);
        if (parsed === null) return;
        if (parsed.value instanceof RespErrorReply) {
          finish(new HarnessError('PROTOCOL', `redis ${args[0] ?? ''} replied with an error: ${parsed.value.message}`));
        } else {
          finish(null, parsed.value);
        }
      } catch (err) {
        finish(err as Error);
      }
    });
    socket.on('end', () =>
      finish(new HarnessError('PROTOCOL', `redis on port ${port} closed the connection before a complete reply`)),
    );
  });
}
