import { readFileSync, statSync } from 'node:fs';
import type { Env } from '@slipway/proto';
import { sshKeyOf, type SshKey } from './sshKeyAgent.js';

// --ssh as buildx reads it: `default` or `ID`, each optionally `=PATH[,PATH...]`, forwarded to
// RUN --mount=type=ssh steps. Without a path, the agent is the one SSH_AUTH_SOCK names. A path is
// an ssh-agent's socket, or private key files that an agent of our own holds (sshKeyAgent.ts).

export type SshSource = { id: string; socket: string; keys?: undefined } | { id: string; keys: SshKey[]; socket?: undefined };

const MAX_KEY_FILE = 100 * 1024;

export function sshSourcesOf(values: readonly string[], env: Env, problems: string[]): SshSource[] {
  const out: SshSource[] = [];
  for (const raw of values) {
    const eq = raw.indexOf('=');
    const id = (eq < 0 ? raw : raw.slice(0, eq)).trim();
    const paths = eq < 0 ? [] : raw.slice(eq + 1).split(',').map((p) => p.trim()).filter((p) => p !== '');
    if (id === '') {
      problems.push(`--ssh needs an ID (default, or a name for RUN --mount=type=ssh,id=NAME); got '${raw}'`);
      continue;
    }
    if (out.some((s) => s.id === id)) {
      problems.push(`--ssh ${id} is given twice`);
      continue;
    }
    const fromEnv = paths.length === 0;
    if (fromEnv) {
      const socket = env['SSH_AUTH_SOCK'];
      if (socket === undefined || socket === '') {
        problems.push(`--ssh ${id}: no ssh-agent: SSH_AUTH_SOCK is not set; start ssh-agent or give ${id}=SOCKET or ${id}=KEYFILE`);
        continue;
      }
      paths.push(socket);
    }
    const before = problems.length;
    const sockets: string[] = [];
    const keys: SshKey[] = [];
    for (const p of paths) {
      const stat = statSync(p, { throwIfNoEntry: false });
      if (!stat) problems.push(`--ssh ${id}: ${p} does not exist; expected an ssh-agent socket or a private key file${fromEnv ? ' (from SSH_AUTH_SOCK)' : ''}`);
      else if (stat.isSocket()) sockets.push(p);
      else if (!stat.isFile()) problems.push(`--ssh ${id}: ${p} is neither a socket nor a file; expected an ssh-agent socket or a private key file`);
      else if (stat.size > MAX_KEY_FILE) problems.push(`--ssh ${id}: ${p} is ${stat.size} bytes, too big for a private key`);
      else {
        try {
          keys.push(sshKeyOf(readFileSync(p, 'utf8'), p));
        } catch (err) {
          problems.push(`--ssh ${id}: ${(err as Error).message}`);
        }
      }
    }
    if (sockets.length > 1) problems.push(`--ssh ${id}: one ssh-agent socket per ID; got ${sockets.length} (${sockets.join(', ')})`);
    if (sockets.length > 0 && paths.length > sockets.length) problems.push(`--ssh ${id}: give an ssh-agent socket or private key files, not both`);
    if (problems.length > before) continue;
    out.push(sockets.length === 1 ? { id, socket: sockets[0]! } : { id, keys });
  }
  return out;
}
