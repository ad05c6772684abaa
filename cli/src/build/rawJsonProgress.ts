import type { FailedStep, SolveProgress, StatusMessage, Timestamp } from './buildStatus.js';
import { ProgressPrinter } from './progressPrinter.js';

// buildx's --progress=rawjson: each Status message as one line of JSON, encoded as Go encodes
// BuildKit's client.SolveStatus (its json tags: lower-case names, empty fields left out, bytes
// in base64, times in RFC 3339 with nanoseconds), so tools written for buildx read ours.

type Json = Record<string, unknown>;

/** Go's time.Time JSON form: RFC 3339, fraction of a second without trailing zeros. */
export function rfc3339Nano(t: Timestamp): string {
  const whole = new Date(Number(t.seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, '');
  const fraction = t.nanos > 0 ? `.${String(t.nanos).padStart(9, '0').replace(/0+$/, '')}` : '';
  return `${whole}${fraction}Z`;
}

// Go's zero time.Time, which a time.Time field (not a pointer) has when BuildKit sent none.
const ZERO_TIME = '0001-01-01T00:00:00Z';

function put(out: Json, key: string, value: unknown, keep: boolean): void {
  if (keep) out[key] = value;
}

/** One Status message as buildx's rawjson line (without the newline). */
export function rawJsonOf(status: StatusMessage): string {
  const out: Json = {};
  const vertexes = status.vertexes.map((v) => {
    const o: Json = {};
    put(o, 'digest', v.digest, v.digest !== '');
    put(o, 'inputs', v.inputs, v.inputs.length > 0);
    put(o, 'name', v.name, v.name !== '');
    put(o, 'started', v.started && rfc3339Nano(v.started), v.started !== null);
    put(o, 'completed', v.completed && rfc3339Nano(v.completed), v.completed !== null);
    put(o, 'cached', true, v.cached);
    put(o, 'error', v.error, v.error !== '');
    return o;
  });
  const statuses = status.statuses.map((s) => {
    const o: Json = { id: s.ID };
    put(o, 'vertex', s.vertex, s.vertex !== '');
    put(o, 'name', s.name, s.name !== '');
    put(o, 'total', Number(s.total), Number(s.total) !== 0);
    o['current'] = Number(s.current);
    o['timestamp'] = s.timestamp ? rfc3339Nano(s.timestamp) : ZERO_TIME;
    put(o, 'started', s.started && rfc3339Nano(s.started), s.started !== null);
    put(o, 'completed', s.completed && rfc3339Nano(s.completed), s.completed !== null);
    return o;
  });
  const logs = status.logs.map((l) => {
    const o: Json = {};
    put(o, 'vertex', l.vertex, l.vertex !== '');
    put(o, 'stream', Number(l.stream), Number(l.stream) !== 0);
    o['data'] = l.msg.toString('base64');
    o['timestamp'] = l.timestamp ? rfc3339Nano(l.timestamp) : ZERO_TIME;
    return o;
  });
  const warnings = status.warnings.map((w) => {
    const o: Json = {};
    put(o, 'vertex', w.vertex, w.vertex !== '');
    put(o, 'level', Number(w.level), Number(w.level) !== 0);
    put(o, 'short', w.short.toString('base64'), w.short.length > 0);
    put(o, 'detail', w.detail.map((d) => d.toString('base64')), w.detail.length > 0);
    put(o, 'url', w.url, w.url !== '');
    return o;
  });
  put(out, 'vertexes', vertexes, vertexes.length > 0);
  put(out, 'statuses', statuses, statuses.length > 0);
  put(out, 'logs', logs, logs.length > 0);
  put(out, 'warnings', warnings, warnings.length > 0);
  // Go's encoder escapes these for HTML safety; done too so lines compare byte for byte.
  return JSON.stringify(out).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export class RawJsonProgress implements SolveProgress {
  // Keeps the steps' log tails for the error report, writing nothing itself.
  private readonly steps = new ProgressPrinter('quiet', () => {});

  constructor(private readonly write: (text: string) => void) {}

  update(status: StatusMessage): void {
    this.write(`${rawJsonOf(status)}\n`);
    this.steps.update(status);
  }

  failedStep(): FailedStep | undefined {
    return this.steps.failedStep();
  }
}
