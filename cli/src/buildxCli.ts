// Asking the machine's Docker CLI about buildx: whether it is there, which version, and what it
// makes of the builder configure-docker wrote (`docker buildx inspect`). Only asked, never
// needed: configure-docker writes buildx's files itself.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Env } from '@slipway/proto';

/** buildx's remote driver appeared in 0.8; `default-load` for it in 0.14. */
export const BUILDX_REMOTE_DRIVER_SINCE = [0, 8, 0] as const;
export const BUILDX_DEFAULT_LOAD_SINCE = [0, 14, 0] as const;

export type BuildxInfo =
  | { kind: 'no-docker'; searched: string }
  | { kind: 'no-buildx'; docker: string; said: string }
  | { kind: 'buildx'; docker: string; version: string; numbers: [number, number, number] };

export interface InspectedNode {
  name: string;
  endpoint: string;
  status: string;
  platforms: string;
  error: string | undefined;
}

export interface Inspection {
  /** The builder `docker buildx inspect` (no name) reported: the current one. */
  name: string | undefined;
  driver: string | undefined;
  nodes: InspectedNode[];
  output: string;
  failed: string | undefined;
}

/** The docker CLI on PATH, if any. */
export function findDocker(env: Env): string | undefined {
  for (const dir of (env['PATH'] ?? '').split(':')) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'docker');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export async function detectBuildx(env: Env, timeoutMs = 20_000): Promise<BuildxInfo> {
  const docker = findDocker(env);
  if (docker === undefined) return { kind: 'no-docker', searched: env['PATH'] ?? '' };
  const result = await run(docker, ['buildx', 'version'], env, timeoutMs);
  const match = /\bv?(\d+)\.(\d+)\.(\d+)/.exec(result.stdout);
  if (result.code !== 0 || match === null) return { kind: 'no-buildx', docker, said: (result.stderr || result.stdout).trim().split('\n')[0] ?? '' };
  const numbers: [number, number, number] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return { kind: 'buildx', docker, version: numbers.join('.'), numbers };
}

export function atLeast(numbers: readonly number[], since: readonly number[]): boolean {
  for (let i = 0; i < since.length; i++) {
    if ((numbers[i] ?? 0) !== since[i]) return (numbers[i] ?? 0) > since[i]!;
  }
  return true;
}

/** `docker buildx inspect` of the current builder, read into its nodes. */
export async function inspectCurrentBuilder(docker: string, env: Env, timeoutMs = 60_000): Promise<Inspection> {
  const result = await run(docker, ['buildx', 'inspect'], env, timeoutMs);
  const output = `${result.stdout}${result.stderr}`.trim();
  const inspection: Inspection = { name: undefined, driver: undefined, nodes: [], output, failed: result.code === 0 ? undefined : output.split('\n').pop() };
  let node: InspectedNode | undefined;
  for (const line of result.stdout.split('\n')) {
    const m = /^([A-Za-z][A-Za-z ]*):\s*(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, key, value] = m as unknown as [string, string, string];
    if (key === 'Name' && node === undefined && inspection.name === undefined) inspection.name = value;
    else if (key === 'Driver' && node === undefined) inspection.driver = value;
    else if (key === 'Name') {
      node = { name: value, endpoint: '', status: '', platforms: '', error: undefined };
      inspection.nodes.push(node);
    } else if (node && key === 'Endpoint') node.endpoint = value;
    else if (node && key === 'Status') node.status = value;
    else if (node && key === 'Platforms') node.platforms = value;
    else if (node && key === 'Error') node.error = value;
  }
  return inspection;
}

function run(file: string, args: string[], env: Env, timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...env, DOCKER_CLI_HINTS: 'false' }, timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: err && !stderr ? err.message : String(stderr) });
    });
  });
}
