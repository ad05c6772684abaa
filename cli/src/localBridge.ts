import type { Readable, Writable } from 'node:stream';
import { pump, type Logger, type Platform, type Pump } from '@slipway/proto';
import { toCliError, type CliError } from './cliError.js';
import type { TunnelClient } from './tunnelClient.js';

export interface LocalEnd {
  readable: Readable;
  writable: Writable;
  // Half-close toward the local peer (the remote side ended cleanly).
  end(): void;
  // Tear the local connection down (the tunnel failed or could not open).
  destroy(): void;
}

// Joins one local connection to one tunnel stream. The local connection is accepted at once and
// its bytes wait (paused, in the kernel's buffer) while the tunnel opens; then bytes flow both
// ways, each direction half-closing on its own. Resolves with the failure, if there was one.
export async function bridgeLocal(local: LocalEnd, client: TunnelClient, platform: Platform, log: Logger): Promise<CliError | undefined> {
  local.readable.pause();
  await bytesSentWithConnect(local.readable);
  let tunnel;
  try {
    tunnel = await client.open(platform);
  } catch (err) {
    const error = toCliError(err);
    log.error('cannot open tunnel', { code: error.code, reason: error.message });
    local.destroy();
    return error;
  }
  return new Promise((resolve) => {
    let localDone = false;
    let remoteDone = false;
    let settled = false;
    const settle = (error: CliError | undefined): void => {
      if (settled) return;
      settled = true;
      client.streamEnded();
      resolve(error);
    };
    const maybeDone = (): void => {
      if (localDone && remoteDone) settle(undefined);
    };
    // Bytes already here leave with the request's HEADERS: one TLS record, one read at the gateway,
    // and OPEN and DATA in one write to the agent. Through pump they would wait for its per-turn
    // cork, and the session would send HEADERS alone first.
    const early = local.readable.read() as Buffer | null;
    if (early !== null) tunnel.writable.write(early);
    const up = pump(local.readable, tunnel.writable, () => {
      localDone = true;
      tunnel.writable.end();
      maybeDone();
    });
    // Only an accepted tunnel carries the remote side's bytes; a refusal's body is the gateway's
    // JSON explanation, which must never reach the local peer as if BuildKit had sent it.
    let down: Pump | undefined;
    tunnel.once('open', () => {
      down = pump(tunnel.readable, local.writable, () => {});
    });
    tunnel.once('remote-end', (error) => {
      down?.stop();
      if (error) {
        log.error('tunnel stream failed', { code: error.code, reason: error.message });
        up.stop();
        local.destroy();
        tunnel.cancel();
        settle(error);
        return;
      }
      // Done only once what came from the remote side has been flushed to the local peer.
      local.writable.once('finish', () => {
        remoteDone = true;
        maybeDone();
      });
      local.end();
    });
    local.readable.once('error', () => {
      tunnel.cancel();
      settle(undefined);
    });
    // A local peer that goes away without ending its side has abandoned the stream. (A read-only
    // side such as stdin closes right after its end; that is not abandonment.)
    local.readable.once('close', () => {
      if (!localDone) {
        tunnel.cancel();
        settle(undefined);
      }
    });
  });
}

// Clients speak first (an HTTP/2 preface, an HTTP request) and usually write right after
// connecting: the tunnel is opened once those bytes are here, so that they travel with the
// request, or after FIRST_BYTES_WAIT_MS for a peer that waits to be spoken to.
const FIRST_BYTES_WAIT_MS = 2;

function bytesSentWithConnect(readable: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (readable.readableLength > 0 || readable.readableEnded) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      readable.off('readable', done);
      resolve();
    };
    const timer = setTimeout(done, FIRST_BYTES_WAIT_MS);
    // Listening for 'readable' starts reading without consuming: what arrives stays buffered.
    readable.on('readable', done);
  });
}
