import fs from 'node:fs';

/** How long audit lines may wait to be written together. */
export const AUDIT_FLUSH_INTERVAL_MS = 50;
/** Queued text that is written at once, without waiting for the interval (bounds the queue). */
export const AUDIT_FLUSH_CHARS = 64 * 1024;

export interface AuditSink {
  /** Queues one line; queued lines are written together within AUDIT_FLUSH_INTERVAL_MS, or at once past AUDIT_FLUSH_CHARS. */
  write(line: string): void;
  /** Writes what is queued now (before the process exits). */
  flush(): void;
}

// Where audit lines go: appended to a file (mode 0600) when configured, else standard error. A
// failing file is reported once on standard error and the lines follow it there, rather than
// being lost silently.
//
// Every tunnel stream is an authentication decision. A write of its own for each (synchronous,
// when standard error is a pipe, and waking whatever reads it) would sit in the middle of the
// stream's opening, on the gateway's thread and on the machine's cores; queued for a moment, a
// burst of opens becomes one write. That write is synchronous (to the file as to a pipe): it comes
// from the timer, off any opening's path, and what flush() writes is out before process.exit()
// returns. What a crash can lose is the moment's queued lines.
export function auditSink(path: string | undefined, stderr: NodeJS.WritableStream, flushIntervalMs = AUDIT_FLUSH_INTERVAL_MS): AuditSink {
  const toStderr = (text: string): void => void stderr.write(text);
  let out = toStderr;
  if (path !== undefined) {
    const fail = (err: Error): void => {
      stderr.write(`slipway-gateway: audit log ${path} failed (${err.message}); writing audit lines to standard error\n`);
      out = toStderr;
    };
    try {
      const fd = fs.openSync(path, 'a', 0o600);
      out = (text) => {
        try {
          fs.writeSync(fd, text);
        } catch (err) {
          fail(err as Error);
          toStderr(text);
        }
      };
    } catch (err) {
      fail(err as Error);
    }
  }
  let queued: string[] = [];
  let queuedChars = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = (): void => {
    clearTimeout(timer);
    timer = undefined;
    if (queued.length === 0) return;
    const text = queued.join('');
    queued = [];
    queuedChars = 0;
    out(text);
  };
  return {
    write: (line) => {
      queued.push(line);
      queuedChars += line.length;
      if (queuedChars >= AUDIT_FLUSH_CHARS) flush();
      else timer ??= setTimeout(flush, flushIntervalMs);
    },
    flush,
  };
}
