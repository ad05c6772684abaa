// What `--transport auto` learned about a network: that HTTP/2 does not make it to the gateway
// (a proxy that terminates TLS and speaks only HTTP/1.1), so the next process goes straight to
// WebSocket instead of paying for a TLS handshake that is thrown away.
//
// A network is named by the way out (the proxy's host:port, or `direct`) and the gateway's
// host:port: that pair is what decides whether HTTP/2 survives. Leaving the office for home
// changes the proxy (or removes it), which is a different key. What was learned expires after a
// day, so a proxy that learns HTTP/2, or a laptop on the same proxy-less address in a different
// place, is probed again.
//
// The file holds no secrets (proxy credentials are never part of a key) but lives in the
// user's Slipway directory, so it gets the same care: written whole and renamed into place, and
// anything unreadable is treated as nothing learned rather than as an error.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export const TRANSPORT_MEMORY_TTL_MS = 24 * 3_600_000;
const MAX_FILE_BYTES = 256 * 1024;
const MAX_ENTRIES = 200;

interface Entry {
  transport: 'websocket';
  /** When HTTP/2 was last seen not to get through (ms since the epoch). */
  learnedAtMs: number;
  /** What the path negotiated instead, for doctor. */
  negotiated: string;
}

export interface RememberedTransport {
  transport: 'websocket';
  learnedAtMs: number;
  negotiated: string;
}

export class TransportMemory {
  constructor(
    /** The JSON file; undefined remembers nothing (no home directory to keep it in). */
    readonly file: string | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  static key(proxyLabel: string | undefined, gatewayHost: string, gatewayPort: number): string {
    return `${proxyLabel === undefined ? 'direct' : `proxy ${proxyLabel}`} -> ${gatewayHost}:${gatewayPort}`;
  }

  recall(key: string): RememberedTransport | undefined {
    const entry = this.read()[key];
    if (entry === undefined || this.now() - entry.learnedAtMs > TRANSPORT_MEMORY_TTL_MS || entry.learnedAtMs > this.now()) return undefined;
    return { transport: entry.transport, learnedAtMs: entry.learnedAtMs, negotiated: entry.negotiated };
  }

  /** HTTP/2 did not get through on this network. Failures to write are the caller's to log. */
  rememberWebSocket(key: string, negotiated: string): void {
    const entries = this.read();
    entries[key] = { transport: 'websocket', learnedAtMs: this.now(), negotiated };
    this.write(entries);
  }

  /** HTTP/2 got through: whatever was learned before no longer holds. */
  forget(key: string): void {
    const entries = this.read();
    if (!(key in entries)) return;
    delete entries[key];
    this.write(entries);
  }

  private read(): Record<string, Entry> {
    if (this.file === undefined) return {};
    let text: string;
    try {
      const stat = fs.statSync(this.file);
      if (!stat.isFile() || stat.size > MAX_FILE_BYTES) return {};
      text = fs.readFileSync(this.file, 'utf8');
    } catch {
      return {};
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return {};
    }
    const networks = (value as { networks?: unknown } | null)?.networks;
    if (typeof networks !== 'object' || networks === null) return {};
    const out: Record<string, Entry> = {};
    for (const [key, raw] of Object.entries(networks)) {
      const e = raw as Partial<Entry> | null;
      if (e?.transport === 'websocket' && typeof e.learnedAtMs === 'number' && Number.isFinite(e.learnedAtMs)) {
        out[key] = { transport: 'websocket', learnedAtMs: e.learnedAtMs, negotiated: typeof e.negotiated === 'string' ? e.negotiated : '' };
      }
    }
    return out;
  }

  private write(entries: Record<string, Entry>): void {
    if (this.file === undefined) return;
    const now = this.now();
    const kept = Object.entries(entries)
      .filter(([, e]) => now - e.learnedAtMs <= TRANSPORT_MEMORY_TTL_MS)
      .sort(([, a], [, b]) => b.learnedAtMs - a.learnedAtMs)
      .slice(0, MAX_ENTRIES);
    const dir = path.dirname(this.file);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const temp = path.join(dir, `.${path.basename(this.file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      fs.writeFileSync(temp, `${JSON.stringify({ networks: Object.fromEntries(kept) }, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
      fs.renameSync(temp, this.file);
    } catch (err) {
      fs.rmSync(temp, { force: true });
      throw err;
    }
  }
}

/** Where the memory lives in the user's Slipway directory. */
export function transportMemoryFile(slipwayDir: string | undefined): string | undefined {
  return slipwayDir === undefined ? undefined : path.join(slipwayDir, 'transports.json');
}
