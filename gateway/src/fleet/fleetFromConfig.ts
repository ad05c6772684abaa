import { Platforms, type Logger, type Platform } from '@slipway/proto';
import type { GatewayConfig } from '../config.js';
import type { GatewayMetrics } from '../metrics.js';
import type { RoutingTable } from '../routing/routingTable.js';
import { Ec2FleetProvider, type Ec2FleetProviderOptions } from './ec2FleetProvider.js';
import { FleetReconciler } from './fleetReconciler.js';
import { LeaderElection } from './leaderElection.js';
import { LocalFleetProvider } from './localFleetProvider.js';
import type { FleetInstanceFacts } from '../agentAdmission.js';
import type { FleetInstance } from './fleetProvider.js';

/** The builder fleet as the gateway program runs it. */
export interface FleetRuntime {
  readonly kind: 'local' | 'ec2';
  /** Whether a build of this platform may wait for the fleet to bring a builder up. */
  canProvision(platform: Platform): boolean;
  /** Joins the leader election and reconciles while leading; counts into the gateway's metrics. */
  start(metrics: Pick<GatewayMetrics, 'builderStarts' | 'fleetActions'>): Promise<void>;
  /** Stops reconciling and resigns the leadership, so another replica takes over at once. */
  close(): Promise<void>;
  /** What the fleet knows of an instance, for admitting the agent that claims to run on it. */
  lookupInstance(instanceId: string): Promise<FleetInstanceFacts | undefined>;
}

// The instance list changes when the fleet launches: a miss refetches, but not more than once per
// second, so agents presenting unknown ids cannot turn into a stream of DescribeInstances calls.
const INSTANCE_LIST_MAX_AGE_MS = 5_000;
const INSTANCE_MISS_REFETCH_MS = 1_000;

export interface FleetDeps {
  table: RoutingTable;
  log: Logger;
  /** AWS credentials; the SDK's default chain when absent. */
  credentials?: Ec2FleetProviderOptions['credentials'];
}

/**
 * The leadership lease for a reconcile interval: three intervals, so a leader misses two passes
 * before it is replaced, and at least 15 s, so a table hiccup does not move the fleet around.
 */
export function fleetLeaderTtlMs(reconcileIntervalMs: number): number {
  return Math.max(15_000, 3 * reconcileIntervalMs);
}

export function fleetFromConfig(config: Pick<GatewayConfig, 'fleet' | 'gatewayId'>, deps: FleetDeps): FleetRuntime {
  const settings = config.fleet;
  const ec2 = settings.ec2;
  if (settings.kind === 'local' || ec2 === undefined) {
    const local = new LocalFleetProvider({ table: deps.table });
    return {
      kind: 'local',
      canProvision: (platform) => local.canProvision(platform),
      start: async () => {},
      close: async () => {},
      lookupInstance: async () => undefined,
    };
  }
  const provider = new Ec2FleetProvider(ec2, { credentials: deps.credentials });
  // A platform without a launch template never gets a builder from this fleet: its builds are
  // refused at once when no agent of it is connected, rather than left to wait.
  const platforms = Platforms.filter((p) => ec2.launchTemplates[p] !== undefined);
  const leadershipName = `fleet:${ec2.fleetName}`;
  const ttlMs = fleetLeaderTtlMs(settings.reconcileIntervalMs);
  const election = new LeaderElection({ table: deps.table, name: leadershipName, holderId: config.gatewayId, ttlMs, log: deps.log });
  let reconciler: FleetReconciler | undefined;
  let instances: { at: number; list: Promise<FleetInstance[]> } | undefined;
  const listed = (maxAgeMs: number): Promise<FleetInstance[]> => {
    const nowMs = Date.now();
    if (!instances || nowMs - instances.at > maxAgeMs) {
      const list = provider.list();
      instances = { at: nowMs, list };
      list.catch(() => {
        if (instances?.list === list) instances = undefined;
      });
    }
    return instances.list;
  };
  const facts = (i: FleetInstance): FleetInstanceFacts => ({ fleet: ec2.fleetName, platform: i.platform, project: i.project, state: i.state, region: ec2.region });
  return {
    kind: 'ec2',
    canProvision: (platform) => platforms.includes(platform),
    async start(metrics) {
      reconciler ??= new FleetReconciler({
        fleet: provider,
        table: deps.table,
        election,
        leadershipName,
        platforms,
        idleStopMs: settings.idleStopMs,
        retentionMs: settings.cacheRetentionMs,
        warmPoolSize: settings.warmPoolSize,
        reconcileIntervalMs: settings.reconcileIntervalMs,
        maxInstancesPerPlatform: settings.maxInstancesPerPlatform,
        metrics,
        log: deps.log,
        // Renewals come every third of the lease; a call must start with at least that much left.
        fenceMarginMs: Math.floor(ttlMs / 3),
        dryRun: ec2.dryRun,
      });
      await election.start();
      reconciler.start();
      deps.log.info('fleet started', { fleet: ec2.fleetName, platforms: platforms.join(','), dryRun: ec2.dryRun, leaderTtlMs: ttlMs });
    },
    async lookupInstance(instanceId) {
      const hit = (await listed(INSTANCE_LIST_MAX_AGE_MS)).find((i) => i.instanceId === instanceId);
      if (hit) return facts(hit);
      const fresh = (await listed(INSTANCE_MISS_REFETCH_MS)).find((i) => i.instanceId === instanceId);
      return fresh && facts(fresh);
    },
    async close() {
      await reconciler?.close();
      await election.close();
      provider.close();
    },
  };
}
