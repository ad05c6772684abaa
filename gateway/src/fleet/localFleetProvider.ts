import { Platforms, type Platform } from '@slipway/proto';
import { GatewayError } from '../gatewayError.js';
import type { RoutingTable } from '../routing/routingTable.js';
import type { FleetInstance, FleetProvider, LaunchRequest } from './fleetProvider.js';

export interface LocalFleetProviderOptions {
  table: RoutingTable;
  now?: () => number;
}

// The `local` fleet: the agents an operator runs by hand. Nothing here can be launched, started
// or stopped; the fleet is simply whoever is connected. list() shows the live builders as running
// instances (instance id = agent id) so that whatever reads a fleet sees the same shape for both
// kinds. Builds for a platform with no connected agent are refused at once (canProvision), since
// no one is going to bring one up.
export class LocalFleetProvider implements FleetProvider {
  readonly kind = 'local' as const;
  private readonly now: () => number;

  constructor(private readonly options: LocalFleetProviderOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The local fleet brings up nothing for any platform. */
  canProvision(_platform: Platform): boolean {
    return false;
  }

  async list(): Promise<FleetInstance[]> {
    const nowMs = this.now();
    const perPlatform = await Promise.all(Platforms.map((p) => this.options.table.listBuilders(p)));
    return perPlatform.flat().flatMap((b) =>
      b.leaseExpiresAtMs > nowMs && b.gatewayIds.length > 0
        ? [
            {
              instanceId: b.agentId,
              platform: b.platform,
              state: 'running' as const,
              project: b.project,
              launchedAtMs: b.registeredAtMs,
              stoppedAtMs: undefined,
            },
          ]
        : [],
    );
  }

  launch(req: LaunchRequest): Promise<FleetInstance> {
    return this.refuse(`launch a ${req.platform} instance for ${req.project ?? 'the pool'}`);
  }

  start(instanceIds: readonly string[]): Promise<void> {
    return this.refuse(`start ${instanceIds.join(', ')}`);
  }

  stop(instanceIds: readonly string[]): Promise<void> {
    return this.refuse(`stop ${instanceIds.join(', ')}`);
  }

  terminate(instanceIds: readonly string[]): Promise<void> {
    return this.refuse(`terminate ${instanceIds.join(', ')}`);
  }

  setProject(instanceId: string, project: string | undefined): Promise<void> {
    return this.refuse(`set the project of ${instanceId} to ${project ?? '(pool)'}`);
  }

  private refuse(what: string): Promise<never> {
    return Promise.reject(
      new GatewayError('FLEET_FAILED', `the local fleet cannot ${what}: its agents are run by hand; use SLIPWAY_FLEET=ec2 for a managed fleet`),
    );
  }
}
