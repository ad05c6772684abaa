import { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import type { WireErrorCode } from '@slipway/proto';
import { CliError, type CliErrorCode } from './cliError.js';

// One tunnel stream, whatever carries it. Emits 'open' once the gateway has accepted it, and
// 'remote-end' exactly once, after the last byte from the remote side was emitted: with no
// argument when the remote side half-closed cleanly, with the reason when it failed.
export interface TunnelStream extends EventEmitter<{ open: []; 'remote-end': [CliError | undefined] }> {
  readonly readable: Readable;
  readonly writable: Writable;
  cancel(): void;
}

export function cliCodeOf(wire: WireErrorCode | string | undefined, accepted: boolean): CliErrorCode {
  switch (wire) {
    case 'UNAUTHENTICATED':
      return 'UNAUTHENTICATED';
    case 'FORBIDDEN':
      return 'FORBIDDEN';
    case 'NO_AGENT':
    case 'NO_CAPACITY':
      return 'NO_AGENT';
    case 'AGENT_LOST':
      return 'AGENT_LOST';
    case 'BUILD_ENDED':
      return 'BUILD_ENDED';
    case 'UNSUPPORTED':
      return 'UNSUPPORTED';
    default:
      return accepted ? 'TUNNEL_FAILED' : 'TUNNEL_REFUSED';
  }
}

export function tunnelError(wire: string | undefined, message: string, accepted: boolean): CliError {
  return new CliError(cliCodeOf(wire, accepted), wire ? `${message} (${wire})` : message);
}

export class TunnelStreamBase extends EventEmitter<{ open: []; 'remote-end': [CliError | undefined] }> {
  private ended = false;

  protected remoteEnd(error: CliError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.emit('remote-end', error);
  }
}
