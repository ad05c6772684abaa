import type { LatencySummary } from './latencyStats.js';
import type { PlacementResults, SimulatedLoad } from './placementResults.js';
import type { PlacerSummary } from './placementTally.js';

// The printed report of bench:placement: the simulation table, the Redis table, and a verdict
// line per target.

export function formatPlacementResults(r: PlacementResults): string {
  const c = r.config;
  const out: string[] = [];
  out.push(
    `Slipway placement benchmark${c.quick ? ' (--quick)' : ''}: ${r.startedAt}, node ${r.environment.node}, ${r.environment.cpus} CPUs (${r.environment.cpuModel}), ` +
      `load average (1/5/15 min) at start ${r.environment.loadAverageAtStart.map((x) => x.toFixed(2)).join(' ')}, ` +
      `at end ${r.environment.loadAverageAtEnd.map((x) => x.toFixed(2)).join(' ')} (the machine is shared: figures move with it)`,
    `seed ${c.seed} (--seed ${c.seed} repeats this run)`,
  );
  if (r.simulation !== undefined) out.push('', ...simulationSection(r, r.simulation));
  if (r.redis !== undefined) out.push('', ...redisSection(r));
  out.push('', 'Verdicts');
  for (const v of r.verdicts) out.push(`  ${v.met ? 'MET    ' : 'NOT MET'}  ${v.target}: ${v.detail}`);
  return `${out.join('\n')}\n`;
}

function simulationSection(r: PlacementResults, loads: SimulatedLoad[]): string[] {
  const c = r.config;
  const retention = formatWait(c.idleRetentionMs);
  const out = [
    `Part 1 - simulated placement (virtual time): ${c.projects} projects (Zipf s=${c.zipfExponent}), Poisson arrivals, ` +
      `build time lognormal median ${formatWait(c.buildMedianMs)} sigma ${c.buildSigma} (cut at ${formatWait(c.buildMaxMs)}), ` +
      `${c.builders} builders x ${c.capacity} slots, warm-up ${formatWait(c.warmupMs)}, measured ${formatWait(c.measureMs)} of arrivals`,
    `slipway: MemoryRoutingTable through the RoutingTable interface, spill after ${formatWait(c.spillAfterMs)}; the fleet releases a binding ` +
      `idle ${retention} (checked every ${formatWait(c.reclaimIntervalMs)}); "+evict" also releases the longest-idle bindings when projects wait for an empty pool`,
    `random / consistent-hash (${c.ringVirtualNodes} virtual nodes each): any free slot / first free builder on the ring; warm when the ` +
      `builder's last ${c.cacheProjects} project${c.cacheProjects === 1 ? '' : 's'} include the build's (K=${c.cacheProjects})`,
    `warm % = warm repeat builds / repeat builds; a repeat build's project had a build arrive within the last ${retention}; ` +
      `"first" builds (no build of the project in that window) are apart, with how many of them landed warm anyway`,
    `spills: slipway - placed on a pool builder though the project had builders; hash - not on the project's ring builder; random has no preference`,
    `loads: "ws N%" has its arrival rate chosen so that the distinct projects building per ${retention} are N% of the ${c.builders} builders ` +
      `(each can keep a builder for its cache: capacity suffices by construction); "N%" offers N% of the build slots, whatever that makes the working set`,
    '',
  ];
  const header = ['load', 'placer', 'repeat', 'warm', 'warm %', 'first (warm)', 'spills', 'wait p50', 'wait p99', 'wait max', 'peak queue', 'placed', 'unplaced'];
  const rows: string[][] = [];
  for (const l of loads) {
    for (const p of l.placers) rows.push(placerRow(l.label, p));
  }
  out.push(textTable(header, rows), '');
  for (const l of loads) {
    const rate =
      l.workingSet === undefined
        ? ''
        : `rate ${l.buildsPerMinute.toFixed(2)} builds/min computed for a mean ${l.workingSet.targetProjectsPerWindow.toFixed(0)} distinct projects per ${retention} ` +
          `(${pct(l.workingSet.share, 0)} of ${c.builders} builders); `;
    out.push(
      `load ${l.label}: ${rate}offered ${pct(l.offeredUtilisation, 1)} of slots, ${l.buildsPerMinute.toFixed(1)} builds/min, ` +
        `${l.measuredBuilds} measured builds (${l.repeatBuilds} repeats); ${l.distinctProjectsPerWindow.toFixed(0)} distinct projects build per ${retention} ` +
        `against ${c.builders} builders; clairvoyant ceiling for builds started in arrival order (one project per builder, Belady eviction, no slot limit) ${pct(l.ceiling.warmRatio, 1)} warm; ` +
        `bindings released: ${Object.entries(l.bindingsReleased)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}; simulated in ${l.simulationSeconds.toFixed(1)} s`,
    );
  }
  return out;
}

function placerRow(load: string, p: PlacerSummary): string[] {
  return [
    load,
    p.placer,
    String(p.repeatBuilds),
    String(p.warmRepeat),
    pct(p.warmRatio, 1),
    `${p.firstBuilds} (${p.warmFirst})`,
    p.spills === undefined ? '-' : String(p.spills),
    formatWait(p.waitP50Ms),
    formatWait(p.waitP99Ms),
    formatWait(p.waitMaxMs),
    String(p.peakWaiting),
    String(p.placed),
    String(p.unplaced),
  ];
}

function redisSection(r: PlacementResults): string[] {
  const c = r.config;
  const redis = r.redis!;
  const out = [
    `Part 2 - RedisRoutingTable on redis-server ${redis.version ?? '?'} (127.0.0.1, no persistence): ${c.redisReplicas} table instances ` +
      `(gateway replicas) with a connection each, round-robin; ${c.redisBuilders} builders x ${c.redisCapacity} registered with every replica, ` +
      `leases renewed every 5 s by each replica and reaped every second during the runs`,
    `a placement = acquire + endAllocation (instant build); warm placements draw from ${c.redisProjects} Zipf projects that keep their builder; ` +
      `"new" placements are a project's first build (pool path), whose binding is released after it`,
    `open loop: placements sent on a fixed schedule (after ${formatMs(c.redisWarmupMs)} unmeasured), latency from the scheduled time to the acquire ` +
      `reply, so client-side queueing counts; call = acquire sent to reply; closed loop: ${c.redisConcurrency} in flight, back to back`,
    '',
  ];
  const header = [
    'run', 'answered/s', 'placed/s', 'pending', 'errors', 'acq p50', 'acq p99', 'acq max',
    'call p50 warm', 'call p50 new', 'call p99 warm', 'call p99 new', 'end p99', 'late p99', 'redis CPU', 'client CPU',
  ];
  const rows = redis.runs.map((run) => {
    const x = run.result;
    const secs = x.durationMs / 1000;
    return [
      run.label,
      ((x.attempted - x.errors) / secs).toFixed(0),
      x.achievedPerSec.toFixed(0),
      x.pending === 0 ? '0' : `${x.pending} (${Object.entries(x.pendingReasons).map(([k, v]) => `${k} ${v}`).join(', ')})`,
      String(x.errors),
      ms(x.acquire, 'p50Ms'),
      ms(x.acquire, 'p99Ms'),
      ms(x.acquire, 'maxMs'),
      ms(x.acquireCallWarm, 'p50Ms'),
      ms(x.acquireCallCold, 'p50Ms'),
      ms(x.acquireCallWarm, 'p99Ms'),
      ms(x.acquireCallCold, 'p99Ms'),
      ms(x.endAllocation, 'p99Ms'),
      ms(x.dispatchLate, 'p99Ms'),
      run.redisCpuSeconds === undefined ? '-' : pct(run.redisCpuSeconds / secs, 0),
      pct(run.clientCpuSeconds / secs, 0),
    ];
  });
  out.push(textTable(header, rows));
  out.push(
    'latencies in ms; acq = open loop: scheduled time to acquire reply, closed loop: the acquire call; call = acquire sent to reply; ' +
      'late = how late the open-loop dispatcher sent; CPU as a share of one core over the run (user+sys)',
  );
  return out;
}

function ms(s: LatencySummary | undefined, key: 'p50Ms' | 'p99Ms' | 'maxMs'): string {
  if (s === undefined) return '-';
  const v = s[key];
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function pct(x: number, digits: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : '-';
}

/** A virtual duration for people: 0 s, 12.3 s, 30.4 min, 13.1 h. */
export function formatWait(msValue: number): string {
  if (!Number.isFinite(msValue)) return '-';
  if (msValue === 0) return '0 s';
  if (msValue < 60_000) return `${(msValue / 1000).toFixed(1)} s`;
  if (msValue < 3_600_000) return `${(msValue / 60_000).toFixed(1)} min`;
  return `${(msValue / 3_600_000).toFixed(1)} h`;
}

function formatMs(msValue: number): string {
  return msValue < 1000 ? `${msValue} ms` : `${msValue / 1000} s`;
}

function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (i <= 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
