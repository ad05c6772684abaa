// What the build probe (buildProbe.ts, loaded into `slipway build`) prints on stderr at exit.
export const PROBE_PREFIX = 'SLIPWAY_BENCH_PROBE ';

/** One FileSync.DiffCopy the CLI served (contextSource.ts publishes it); times in epoch ms. */
export interface UploadEvent {
  dir: string;
  startedAt: number;
  listedAt: number;
  finishedAt: number;
  entries: number;
  filesSent: number;
  bytesSent: number;
  packets: number;
}

export interface ProbeReport {
  processStartedAt: number;
  probeLoadedAt: number;
  firstSocketAt: number | undefined;
  exitAt: number;
  uploads: UploadEvent[];
  cpuUserMs: number;
  cpuSystemMs: number;
}
