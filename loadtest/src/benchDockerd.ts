// The dockerd 20.10 the build bench measures against: its own data-root, exec-root and socket in
// the bench's scratch folder, and its own bridge, so RUN steps work whether or not another
// dockerd on the machine holds docker0. Needs root.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { BenchError } from './benchError.js';
import { BenchProcess } from './benchProcess.js';

const run = promisify(execFile);
const DOCKERD = '/usr/sbin/dockerd';
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 20_000;

export interface BenchDockerd {
  socketPath: string;
  process: BenchProcess;
  /** An Engine API call on the socket; rejects unless the status is 2xx (or one of `alsoOk`). */
  api(method: string, apiPath: string, alsoOk?: number[]): Promise<string>;
  stop(): Promise<void>;
}

function mountsUnder(dir: string): string[] {
  const found: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const point = field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
    if (point === dir || point.startsWith(`${dir}/`)) found.push(point);
  }
  return found;
}

function request(socketPath: string, method: string, apiPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: apiPath, method, agent: false, headers: { host: 'docker' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function startBenchDockerd(dir: string, baseEnv: Record<string, string>, echo: boolean): Promise<BenchDockerd> {
  if (process.getuid?.() !== 0) throw new BenchError('CONFIG_INVALID', `the build bench starts dockerd, which needs root; this process runs as uid ${process.getuid?.() ?? '?'}`);
  await mkdir(dir, { recursive: true });
  const socketPath = path.join(dir, 'docker.sock');
  const configPath = path.join(dir, 'daemon.json');
  await writeFile(configPath, '{}');
  // Interface names are at most 15 bytes; the pid keeps two benches apart.
  const bridge = `swbench${process.pid % 100_000}`;
  const subnet = `10.213.${process.pid % 250}.1/24`;
  await run('ip', ['link', 'del', bridge]).catch(() => undefined);
  await run('ip', ['link', 'add', bridge, 'type', 'bridge']);
  await run('ip', ['addr', 'add', subnet, 'dev', bridge]);
  await run('ip', ['link', 'set', bridge, 'up']);
  const id = `swbench${process.pid}`;
  const proc = new BenchProcess({
    name: 'dockerd',
    command: DOCKERD,
    args: [
      '--host', `unix://${socketPath}`,
      '--data-root', path.join(dir, 'data'),
      '--exec-root', path.join(dir, 'x'),
      '--pidfile', path.join(dir, 'pid'),
      '--config-file', configPath,
      '--iptables=false',
      '--bridge', bridge,
      '--containerd-namespace', id,
      '--containerd-plugins-namespace', `${id}p`,
    ],
    cwd: dir,
    env: baseEnv,
    echo,
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await proc.stop(STOP_GRACE_MS);
      for (const point of mountsUnder(dir).sort((a, b) => b.length - a.length)) await run('umount', ['--lazy', point]).catch(() => undefined);
      await run('ip', ['link', 'del', bridge]).catch(() => undefined);
    })();
    return stopping;
  };
  const api = async (method: string, apiPath: string, alsoOk: number[] = []): Promise<string> => {
    const { status, body } = await request(socketPath, method, apiPath);
    if ((status < 200 || status > 299) && !alsoOk.includes(status)) throw new BenchError('PROTOCOL', `dockerd answered ${method} ${apiPath} with ${status}: ${body.slice(0, 500)}`);
    return body;
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitStatus !== undefined) {
      await stop();
      throw new BenchError('PROCESS_FAILED', `dockerd exited during start-up\n${proc.describeExit()}`);
    }
    const answer = await request(socketPath, 'GET', '/_ping').catch((err: Error) => ({ status: 0, body: err.message }));
    if (answer.status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new BenchError('TIMEOUT', `dockerd did not answer GET /_ping within ${START_TIMEOUT_MS} ms (last: ${answer.status} ${answer.body})\n${proc.describeExit()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { socketPath, process: proc, api, stop };
}
