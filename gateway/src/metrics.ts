// A small Prometheus text-format registry: counters and gauges with labels. Enough for the
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
    readonly type: 'counter' | 'gauge',
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

  render(): string {
    const lines: string[] = [];
    for (const s of this.series) {
      if (s instanceof Gauge) s.refresh();
      lines.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`);
      for (const [key, value] of s.values) lines.push(`${s.name}${key} ${value}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

export interface GatewayMetrics {
  registry: MetricsRegistry;
  streamsOpened: Counter;
  streamsFailed: Counter;
  bytes: Counter;
  agentConnections: Counter;
  authFailures: Counter;
}

export function createGatewayMetrics(collectAgents: () => Array<[Labels, number]>, collectStreams: () => Array<[Labels, number]>): GatewayMetrics {
  const registry = new MetricsRegistry();
  const metrics: GatewayMetrics = {
    registry,
    streamsOpened: registry.counter('slipway_tunnel_streams_opened_total', 'Tunnel streams accepted, by transport and platform.'),
    streamsFailed: registry.counter('slipway_tunnel_streams_failed_total', 'Tunnel streams that ended with an error, by code.'),
    bytes: registry.counter('slipway_tunnel_bytes_total', 'Bytes carried through tunnels, by direction.'),
    agentConnections: registry.counter('slipway_agent_connections_total', 'Agent connections, by outcome.'),
    authFailures: registry.counter('slipway_auth_failures_total', 'Rejected authentications, by path and code.'),
  };
  registry.gauge('slipway_agents_connected', 'Agents connected to this replica, by platform and state.', collectAgents);
  registry.gauge('slipway_tunnel_streams_active', 'Tunnel streams open now, by platform.', collectStreams);
  return metrics;
}
