import { cpuTotal, type BenchResults } from './benchResults.js';
import type { CpuRole } from './benchRun.js';
import type { TargetName } from './benchStack.js';

const TARGET_LABEL: Record<TargetName, string> = { direct: 'direct', h2: 'slipway h2', websocket: 'slipway ws' };
const PROXY_ROLE: Record<TargetName, CpuRole | undefined> = { direct: undefined, h2: 'proxyH2', websocket: 'proxyWebsocket' };

export function formatNumber(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(1) : a >= 10 ? v.toFixed(2) : v.toFixed(3);
}

function formatRatio(v: number): string {
  if (!Number.isFinite(v)) return '-';
  return `${v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3)}x`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function formatResults(r: BenchResults): string {
  const c = r.config.concurrency;
  const out: string[] = [];
  out.push(
    `Slipway tunnel benchmark${r.config.quick ? ' (--quick)' : ''}: ${r.startedAt}, node ${r.environment.node}, ${r.environment.cpus} CPUs (${r.environment.cpuModel})`,
    `upstream ${r.upstream} in its own process; gateway, agent, CLI proxy and bench client each in their own process`,
    `throughput: one stream, one direction at a time, ${(r.config.uploadBytes / 1e6).toFixed(1)} MB up / ${(r.config.downloadBytes / 1e6).toFixed(1)} MB down (1 MB = 10^6 bytes), ` +
      `after a first transfer of ${(r.config.warmupBytes / 1e6).toFixed(1)} MB each way per target (the "first" rows)`,
    `open latency: connect start to first echoed byte of a 1-byte write; c=1: ${r.config.latencySamples} samples planned, c=${c}: ${r.config.rounds} rounds of ${c} planned`,
    '',
  );
  const header = ['metric', ...r.targets.flatMap((t) => (t === 'direct' ? [TARGET_LABEL[t]] : [TARGET_LABEL[t], 'vs direct']))];
  out.push(
    table(
      header,
      r.summary.map((s) => [s.label, ...r.targets.flatMap((t) => (t === 'direct' ? [formatNumber(s.values[t])] : [formatNumber(s.values[t]), formatRatio(s.ratioToDirect[t])]))]),
    ),
  );
  const added = (t: 'h2' | 'websocket'): string =>
    Object.entries(r.addedP50Ms[t])
      .map(([k, v]) => `${k.replace('c', 'c=')} ${v >= 0 ? '+' : ''}${formatNumber(v)} ms`)
      .join(', ');
  out.push('', `added p50 latency (slipway h2 p50 - direct p50): ${added('h2')}`, `added p50 latency (slipway ws p50 - direct p50): ${added('websocket')}`);
  const samples = r.latencies.map((l) => `${l.target} c=${l.concurrency}: ${l.samples}${l.stoppedByBudget ? ` (budget hit after ${l.roundsRun}/${l.roundsPlanned} rounds)` : ''}`);
  out.push(`latency samples: ${samples.join('; ')}`);
  const verified = r.transfers.filter((t) => t.direction === 'upload').map((t) => `${t.target} ${t.bytesVerified === t.bytes ? 'ok' : `MISMATCH ${t.bytesVerified}/${t.bytes}`}`);
  out.push(`upload byte counts confirmed by the upstream: ${verified.join(', ')}`);
  out.push(
    `gateway: ${r.gateway.streamsOpened} tunnel streams opened (${r.gateway.streamsOnLanes} carried to the agent on lanes, the rest on the agent link), ` +
      `${r.gateway.streamsFailed} failed, ${(r.gateway.bytesCarried / 1e9).toFixed(2)} GB carried`,
  );

  const roles: Array<[string, (t: TargetName) => CpuRole | undefined]> = [
    ['client', () => 'client'],
    ['upstream', () => 'upstream'],
    ['proxy', (t) => PROXY_ROLE[t]],
    ['gateway', () => 'gateway'],
    ['agent', () => 'agent'],
  ];
  const cpuRows: string[][] = [];
  for (const t of r.transfers) {
    const perGb = (v: number | undefined): number | undefined => (v === undefined ? undefined : v / (t.bytes / 1e9));
    const used = roles.map(([, pick]) => pick(t.target)).filter((x): x is CpuRole => x !== undefined);
    cpuRows.push([
      `${t.direction} ${TARGET_LABEL[t.target]}`,
      'CPU s per GB',
      ...roles.map(([, pick]) => {
        const role = pick(t.target);
        return role === undefined ? '-' : formatNumber(perGb(t.cpuSeconds[role]));
      }),
      formatNumber(perGb(cpuTotal(t.cpuSeconds, used))),
    ]);
  }
  for (const l of r.latencies) {
    const perOpen = (v: number | undefined): number | undefined => (v === undefined ? undefined : (v * 1000) / l.samples);
    const used = roles.map(([, pick]) => pick(l.target)).filter((x): x is CpuRole => x !== undefined);
    cpuRows.push([
      `open c=${l.concurrency} ${TARGET_LABEL[l.target]}`,
      'CPU ms per open',
      ...roles.map(([, pick]) => {
        const role = pick(l.target);
        return role === undefined ? '-' : formatNumber(perOpen(l.cpuSeconds[role]));
      }),
      formatNumber(perOpen(cpuTotal(l.cpuSeconds, used))),
    ]);
  }
  out.push('', 'CPU time by process (user+sys, from /proc; 10 ms resolution)', table(['measurement', 'unit', ...roles.map(([n]) => n), 'total'], cpuRows));
  return `${out.join('\n')}\n`;
}
