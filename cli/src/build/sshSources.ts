import { statSync } from 'node:fs';
import type { Env } from '@slipway/proto';

// --ssh as buildx reads it: `default` or `ID`, each optionally `=PATH`, forwarded to RUN
// --mount=type=ssh steps. Without a path, the agent is the one SSH_AUTH_SOCK names. Slipway
// forwards ssh-agent sockets; a private key file would need an agent of our own holding it.

export interface SshSource {
  id: string;
  /** The ssh-agent's unix socket. */
  socket: string;
}

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
    if (paths.length > 1) {
      problems.push(`--ssh ${id}: one ssh-agent socket per ID; got ${paths.length} paths (${paths.join(', ')})`);
      continue;
    }
    const socket = paths[0] ?? env['SSH_AUTH_SOCK'];
    if (socket === undefined || socket === '') {
      problems.push(`--ssh ${id}: no ssh-agent: SSH_AUTH_SOCK is not set; start ssh-agent or give ${id}=SOCKET`);
      continue;
    }
    const stat = statSync(socket, { throwIfNoEntry: false });
    if (!stat) problems.push(`--ssh ${id}: ${socket} does not exist; expected an ssh-agent socket${paths[0] === undefined ? ' (from SSH_AUTH_SOCK)' : ''}`);
    else if (stat.isFile()) problems.push(`--ssh ${id}: ${socket} is a file (a private key?); slipway build forwards ssh-agent sockets only: ssh-add the key to an agent and give its socket`);
    else if (!stat.isSocket()) problems.push(`--ssh ${id}: ${socket} is not a socket; expected an ssh-agent socket`);
    else out.push({ id, socket });
  }
  return out;
}
