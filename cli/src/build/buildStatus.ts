// BuildKit's Status stream messages (moby.buildkit.v1.StatusResponse) as the codecs decode them:
// int64 fields arrive as strings, timestamps as {seconds, nanos} or null, bytes as Buffers.

export interface Timestamp {
  seconds: string;
  nanos: number;
}

export interface StatusVertex {
  digest: string;
  inputs: string[];
  name: string;
  cached: boolean;
  started: Timestamp | null;
  completed: Timestamp | null;
  error: string;
}

export interface StatusTransfer {
  ID: string;
  vertex: string;
  name: string;
  current: string;
  total: string;
  timestamp: Timestamp | null;
  started: Timestamp | null;
  completed: Timestamp | null;
}

export interface StatusLog {
  vertex: string;
  timestamp: Timestamp | null;
  stream: string;
  msg: Buffer;
}

export interface StatusWarning {
  vertex: string;
  level: string;
  short: Buffer;
  detail: Buffer[];
  url: string;
}

export interface StatusMessage {
  vertexes: StatusVertex[];
  statuses: StatusTransfer[];
  logs: StatusLog[];
  warnings: StatusWarning[];
}

/** The step that failed (its name, BuildKit's error and its last log lines). */
export interface FailedStep {
  name: string;
  error: string;
  tail: string[];
}

/** What every progress mode does with one solve's Status stream. */
export interface SolveProgress {
  update(status: StatusMessage): void;
  failedStep(): FailedStep | undefined;
}

export function secondsOf(t: Timestamp | null): number | undefined {
  return t === null ? undefined : Number(t.seconds) + t.nanos / 1e9;
}

/** Byte counts as buildx writes them (go-units' HumanSize: decimal units, 4 significant digits). */
export function byteSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${n}B` : `${Number(value.toPrecision(4))}${units[unit]}`;
}
