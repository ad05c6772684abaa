import type { BuildCase, BuildSample } from './buildBenchRun.js';
import type { UploadEvent } from './buildProbeLine.js';

// The build bench's report: wall time per case and tool, the ratio, and where Slipway's time goes.

const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const min = (values: number[]): number => (values.length === 0 ? NaN : Math.min(...values));
const fmt = (v: number | undefined, digits = 2): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** The upload of the whole context (BuildKit first reads only .dockerignore from it, in a DiffCopy of its own). */
export function contextUpload(s: BuildSample): UploadEvent | undefined {
  const uploads = s.probe?.uploads.filter((u) => u.dir === 'context') ?? [];
  return uploads.sort((a, b) => b.entries - a.entries)[0];
}

function contextUploadSeconds(s: BuildSample): number {
  const u = contextUpload(s);
  return u ? (u.finishedAt - u.startedAt) / 1000 : NaN;
}

export interface CaseVerdict {
  kind: BuildCase;
  ratio: number;
}

export function verdicts(samples: BuildSample[]): CaseVerdict[] {
  return (['cold', 'incremental'] as const).map((kind) => {
    const of = (tool: string): number => median(samples.filter((s) => s.kind === kind && s.tool === tool).map((s) => s.wallSeconds));
    return { kind, ratio: of('slipway') / of('docker') };
  });
}

export function formatBuildBench(samples: BuildSample[]): string {
  const out: string[] = [];
  const rows: string[][] = [];
  for (const kind of ['cold', 'incremental'] as const) {
    const dockerMedian = median(samples.filter((s) => s.kind === kind && s.tool === 'docker').map((s) => s.wallSeconds));
    for (const tool of ['docker', 'slipway'] as const) {
      const of = samples.filter((s) => s.kind === kind && s.tool === tool);
      const walls = of.map((s) => s.wallSeconds);
      const med = median(walls);
      rows.push([
        `${kind} ${tool}`,
        String(of.length),
        fmt(med),
        fmt(min(walls)),
        tool === 'docker' ? '' : `${fmt(med / dockerMedian)}x`,
        fmt(median(of.map((s) => (tool === 'docker' ? (s.contextSeconds ?? NaN) : contextUploadSeconds(s)))), 1),
        of.at(-1)?.contextTransferred ?? '-',
        fmt(median(of.map((s) => s.clientCpuSeconds))),
        fmt(median(of.map((s) => s.cpu['dockerd'] ?? NaN))),
        tool === 'docker' ? '' : fmt(median(of.map((s) => (s.cpu['gateway'] ?? 0) + (s.cpu['agent'] ?? 0)))),
      ]);
    }
  }
  out.push(
    table(['case', 'runs', 'median s', 'min s', 'slipway/docker', 'context s*', 'context sent*', 'client CPU s', 'dockerd CPU s', 'gw+agent CPU s'], rows),
    '* docker: the `load build context` step\'s time as the builder reports it; slipway: the context\'s DiffCopy as the CLI served it (listing',
    '  included); context sent: what the builder\'s `transferring context` line said',
    '',
  );

  // Where Slipway's time goes, from the probe loaded into the CLI (medians over the runs).
  const detail: string[][] = [];
  for (const kind of ['cold', 'incremental'] as const) {
    const of = samples.filter((s) => s.kind === kind && s.tool === 'slipway' && s.probe);
    if (of.length === 0) continue;
    const ctx = contextUpload;
    const m = (f: (s: BuildSample) => number | undefined): number => median(of.map((s) => f(s) ?? NaN));
    const seconds = (f: (s: BuildSample) => number | undefined): string => fmt(m(f) / 1000);
    const walk = m((s) => (ctx(s) ? ctx(s)!.listedAt - ctx(s)!.startedAt : undefined));
    const send = m((s) => (ctx(s) ? ctx(s)!.finishedAt - ctx(s)!.listedAt : undefined));
    const bytes = m((s) => ctx(s)?.bytesSent);
    detail.push([
      kind,
      seconds((s) => (s.probe!.firstSocketAt ?? NaN) - s.spawnedAt),
      seconds((s) => (ctx(s)?.startedAt ?? NaN) - (s.probe!.firstSocketAt ?? NaN)),
      fmt(walk / 1000),
      fmt(send / 1000),
      `${fmt(m((s) => ctx(s)?.entries), 0)}/${fmt(m((s) => ctx(s)?.filesSent), 0)}`,
      fmt(bytes / 1e6, 1),
      fmt(bytes / 1e6 / (send / 1000), 0),
      seconds((s) => s.probe!.exitAt - (ctx(s)?.finishedAt ?? NaN)),
      fmt(m((s) => (s.probe!.cpuUserMs + s.probe!.cpuSystemMs) / 1000)),
    ]);
  }
  if (detail.length > 0) {
    out.push(
      'Where slipway build\'s time goes (medians, seconds; from a probe loaded into the CLI and the diagnostics channel of its context source):',
      table(['case', 'start-up', 'to upload', 'walk+stat', 'send', 'entries/files sent', 'MB sent', 'send MB/s', 'after upload', 'CLI CPU s'], detail),
      '  start-up: spawn to the first socket (Node start, loading the CLI: the bundle, or tsx transpiling it with --cli source; configuration);',
      '  to upload: gateway connection, tunnel to dockerd, Solve, the frontend reading the Dockerfile, until BuildKit asks for the context;',
      '  walk+stat: listing the context (.dockerignore applied);',
      '  send: the context\'s stats and files until BuildKit says FIN, as the session handler sees it (the tunnel\'s throughput included);',
      '  after upload: COPY, RUN and the rest of the solve on the builder, then the CLI\'s exit.',
    );
  }
  return out.join('\n');
}
