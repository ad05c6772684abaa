// A small Prometheus text-format registry: counters, gauges and histograms with labels. Enough for the
// gateway's handful of series without pulling in a client library.

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  const escape = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return `{${keys.map((k) => `${k}="${escape(labels[k]!)}"`).join(',')}}`;
}

class Series {
  readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
  ) {}
}

export class Counter extends Series {
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
}

export class Gauge extends Series {
  constructor(name: string, help: string, private readonly collect?: () => Array<[Labels, number]>) {
    super(name, help, 'gauge');
  }
  set(labels: Labels, value: number): void {
    this.values.set(labelKey(labels), value);
  }
  refresh(): void {
    if (!this.collect) return;
    this.values.clear();
    for (const [labels, value] of this.collect()) this.set(labels, value);
  }
}

// Cumulative buckets as Prometheus expects: each observation counts in every bucket whose bound
// it does not exceed, plus _sum and _count.
export class Histogram extends Series {
  private readonly buckets = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();

  constructor(name: string, help: string, readonly bounds: readonly number[]) {
    super(name, help, 'histogram');
  }

  observe(labels: Labels, value: number): void {
    const key = labelKey(labels);
    let entry = this.buckets.get(key);
    if (!entry) {
      entry = { labels, counts: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.buckets.set(key, entry);
    }
    this.bounds.forEach((bound, i) => {
      if (value <= bound) entry.counts[i]!++;
    });
    entry.sum += value;
    entry.count++;
  }

  lines(): string[] {
    const out: string[] = [];
    for (const { labels, counts, sum, count } of this.buckets.values()) {
      this.bounds.forEach((bound, i) => out.push(`${this.name}_bucket${labelKey({ ...labels, le: String(bound) })} ${counts[i]}`));
      out.push(`${this.name}_bucket${labelKey({ ...labels, le: '+Inf' })} ${count}`);
      out.push(`${this.name}_sum${labelKey(labels)} ${sum}`, `${this.name}_count${labelKey(labels)} ${count}`);
    }
    return out;
  }
}

export class MetricsRegistry {
  private readonly series: Series[] = [];

  counter(name: string, help: string): Counter {
    const c = new Counter(name, help, 'counter');
    this.series.push(c);
    return c;
  }

  gauge(name: string, help: string, collect?: () => Array<[Labels, number]>): Gauge {
    const g = new Gauge(name, help, collect);
    this.series.push(g);
    return g;
  }

  histogram(name: string, help: string, bounds: readonly number[]): Histogram {
    const h = new Histogram(name, help, bounds);
    this.series.push(h);
    return h;
  }

  render(): string {
    const lines: string[] = [];
    for (const s of this.series) {
      if (s instanceof Gauge) s.refresh();
      lines.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`);
      if (s instanceof Histogram) {
        lines.push(...s.lines());
        continue;
      }
      for (const [key, value] of s.values) lines.push(`${s.name}${key} ${value}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

export interface GatewayMetrics {
  registry: MetricsRegistry;
  streamsOpened: Counter;
  streamsFailed: Counter;
  /** Streams to an agent held here, by what carried them to it: a lane, or the link itself. */
  streamsByPath: Counter;
  /** Tunnel streams by what they carry: BuildKit's API (or the Docker API), or an attached BuildKit session. */
  streamsByKind: Counter;
  /** Lane connections agents offered, by outcome. */
  laneConnections: Counter;
  bytes: Counter;
  agentConnections: Counter;
  authFailures: Counter;
  /** Builds placed on a builder, by platform and kind (warm, pool, spill). */
  placements: Counter;
  /** Acquisitions answered from the project's own builder (hit) or not (miss), by platform. */
  affinity: Counter;
  /** Builds that waited past the spill limit and took another builder, by platform. */
  spills: Counter;
  /** Time from a build's first acquire to its placement, by platform. */
  queueWaitSeconds: Histogram;
  /** Acquisitions answered pending, by platform and reason. */
  pending: Counter;
  /** Builders started for a project: warm (a stopped VM with its cache) or cold (pool or new launch), by platform. */
  builderStarts: Counter;
  /** Fleet actions taken by the leader, by action and outcome. */
  fleetActions: Counter;
}

export function createGatewayMetrics(collectAgents: () => Array<[Labels, number]>, collectStreams: () => Array<[Labels, number]>): GatewayMetrics {
  const registry = new MetricsRegistry();
  const metrics: GatewayMetrics = {
    registry,
    streamsOpened: registry.counter('slipway_tunnel_streams_opened_total', 'Tunnel streams accepted, by transport and platform.'),
    streamsFailed: registry.counter('slipway_tunnel_streams_failed_total', 'Tunnel streams that ended with an error, by code.'),
    streamsByPath: registry.counter('slipway_tunnel_streams_by_path_total', 'Tunnel streams by what carried them to the agent: lane (a data connection) or link (a stream on the agent link).'),
    streamsByKind: registry.counter('slipway_tunnel_streams_by_kind_total', 'Tunnel streams by what they carry: api (BuildKit\'s or the Docker API) or session (a BuildKit session attached to dockerd\'s /session).'),
    laneConnections: registry.counter('slipway_agent_lanes_total', 'Lane connections agents opened, by outcome.'),
    bytes: registry.counter('slipway_tunnel_bytes_total', 'Bytes carried through tunnels, by direction.'),
    agentConnections: registry.counter('slipway_agent_connections_total', 'Agent connections, by outcome.'),
    authFailures: registry.counter('slipway_auth_failures_total', 'Rejected authentications, by path and code.'),
    placements: registry.counter('slipway_placements_total', 'Builds placed on a builder, by platform and kind (warm, pool, spill).'),
    affinity: registry.counter('slipway_placement_affinity_total', "Placements on the project's own builder (hit) or elsewhere (miss), by platform."),
    spills: registry.counter('slipway_placement_spills_total', "Builds that outwaited the spill limit and went to another builder, by platform."),
    queueWaitSeconds: registry.histogram(
      'slipway_placement_queue_wait_seconds',
      "Time from a build's first acquire to its placement, by platform.",
      [0.005, 0.05, 0.25, 1, 5, 15, 60, 300],
    ),
    pending: registry.counter('slipway_placement_pending_total', 'Acquisitions answered pending, by platform and reason.'),
    builderStarts: registry.counter('slipway_builder_starts_total', 'Builders brought up for a project, by platform and kind (warm: stopped VM with its cache; cold: pool or launch).'),
    fleetActions: registry.counter('slipway_fleet_actions_total', 'Fleet actions by the reconciling leader, by action and outcome.'),
  };
  registry.gauge('slipway_agents_connected', 'Agents connected to this replica, by platform and state.', collectAgents);
  registry.gauge('slipway_tunnel_streams_active', 'Tunnel streams open now, by platform.', collectStreams);
  return metrics;
}
