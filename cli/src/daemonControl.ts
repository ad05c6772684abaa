// Starting, stopping and asking after the proxy daemon from other commands (`slipway daemon
// start|stop|status`, configure-docker, the Docker CLI plugin). The daemon is found through its
// state file and checked by its processes being alive, never by connecting to its sockets: a
// connection there is a build (it would create one at the gateway).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type { Env, Platform } from '@slipway/proto';
import { CliError } from './cliError.js';
import type { DaemonState } from './daemonSupervisor.js';
import type { DaemonPaths } from './dockerLocations.js';
import { programArgs, type SlipwayProgram } from './slipwayProgram.js';

export interface DaemonStatus {
  running: boolean;
  /** Running, and its worker is ready to carry connections. */
  ready: boolean;
  state: DaemonState | undefined;
  /** Why it is not running, when it is known (the supervisor gave up). */
  problem: string | undefined;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;

export function readDaemonState(paths: DaemonPaths): DaemonState | undefined {
  try {
    const state = JSON.parse(fs.readFileSync(paths.stateFile, 'utf8')) as DaemonState;
    return typeof state.supervisorPid === 'number' ? state : undefined;
  } catch {
    return undefined;
  }
}

export function daemonStatus(paths: DaemonPaths, platforms: readonly Platform[]): DaemonStatus {
  const state = readDaemonState(paths);
  if (state === undefined) return { running: false, ready: false, state, problem: undefined };
  if (!isDaemonProcess(state.supervisorPid)) {
    return { running: false, ready: false, state, problem: state.stoppedBecause };
  }
  const socketsThere = platforms.every((p) => isSocket(paths.sockets[p]));
  const workerAlive = state.workerPid !== undefined && isDaemonProcess(state.workerPid);
  return { running: socketsThere, ready: socketsThere && state.ready && workerAlive, state, problem: socketsThere ? undefined : 'its sockets are gone' };
}

export interface StartDaemonOptions {
  paths: DaemonPaths;
  platforms: readonly Platform[];
  program: SlipwayProgram;
  /** Flags for `daemon run` (the connection settings given to the command that starts it). */
  args: readonly string[];
  env: Env;
}

/** Starts the daemon unless it is running; resolves with its status once its worker is ready. */
export async function ensureDaemon(options: StartDaemonOptions): Promise<DaemonStatus & { started: boolean }> {
  const status = daemonStatus(options.paths, options.platforms);
  if (status.ready) return { ...status, started: false };
  // Half alive (sockets gone, or a supervisor whose worker keeps failing): start afresh.
  if (status.state !== undefined && isDaemonProcess(status.state.supervisorPid)) await stopDaemon(options.paths);
  fs.mkdirSync(options.paths.dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(options.paths.dir, 0o700);
  const log = fs.openSync(options.paths.logFile, 'a', 0o600);
  const logStart = fs.fstatSync(log).size;
  let child;
  try {
    child = spawn(options.program.node, programArgs(options.program, ['daemon', 'run', ...options.args]), {
      detached: true,
      stdio: ['ignore', log, log],
      env: options.env,
    });
  } finally {
    fs.closeSync(log);
  }
  child.on('error', () => {});
  let exited: number | null | undefined;
  child.once('exit', (code) => {
    exited = code;
  });
  child.unref();
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const now = daemonStatus(options.paths, options.platforms);
    if (now.ready && now.state?.supervisorPid === child.pid) return { ...now, started: true };
    if (exited !== undefined || Date.now() > deadline) {
      const said = logSince(options.paths.logFile, logStart);
      if (exited === undefined) child.kill('SIGTERM');
      throw new CliError(
        exited === 2 ? 'CONFIG_INVALID' : 'INTERNAL',
        `the Slipway daemon ${exited !== undefined ? `exited (code ${exited})` : `was not ready within ${START_TIMEOUT_MS} ms`} while starting${said ? `; it said:\n${said}` : ''}\n(log: ${options.paths.logFile})`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Stops the daemon (its builds are finished); false when none was running. */
export async function stopDaemon(paths: DaemonPaths): Promise<boolean> {
  const state = readDaemonState(paths);
  if (state === undefined || !isDaemonProcess(state.supervisorPid)) {
    fs.rmSync(paths.stateFile, { force: true });
    return false;
  }
  process.kill(state.supervisorPid, 'SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (isDaemonProcess(state.supervisorPid)) {
    if (Date.now() > deadline) {
      process.kill(state.supervisorPid, 'SIGKILL');
      if (state.workerPid !== undefined && isDaemonProcess(state.workerPid)) process.kill(state.workerPid, 'SIGKILL');
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  fs.rmSync(paths.stateFile, { force: true });
  return true;
}

// Alive, and a slipway daemon process rather than whatever reused the pid since.
function isDaemonProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    // Gone, or another user's (EPERM): not our daemon either way.
    return false;
  }
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('slipway') && cmdline.includes('daemon');
  } catch {
    // No /proc (macOS): trust the pid.
    return true;
  }
}

function isSocket(file: string): boolean {
  try {
    return fs.statSync(file).isSocket();
  } catch {
    return false;
  }
}

function logSince(file: string, offset: number): string {
  try {
    const text = fs.readFileSync(file, 'utf8').slice(offset).trim();
    return text.length > 4000 ? `...${text.slice(-4000)}` : text;
  } catch {
    return '';
  }
}
