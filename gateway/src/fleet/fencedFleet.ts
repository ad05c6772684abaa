import { GatewayError } from '../gatewayError.js';
import type { RoutingTable } from '../routing/routingTable.js';
import type { FleetInstance, FleetProvider, LaunchRequest } from './fleetProvider.js';

export interface FencedFleetOptions {
  /** The leadership whose token this fleet acts under. */
  name: string;
  /** The fencing token the caller holds. */
  token: number;
  now?: () => number;
  /**
   * The token must still be valid this long after the check. A new leader only gets a token
   * once the old lease has run out, so a call that starts within the margin cannot overlap a
   * successor's calls. 0 checks the present only.
   */
  marginMs?: number;
}

// A FleetProvider that acts only while the given fencing token is the table's current leader
// token. A replica that stalled (GC pause, lost network) and resumes mid-pass after another took
// over gets STALE_LEADER instead of launching or stopping VMs next to the new leader.
//
// EC2 itself knows nothing of the token, so check and call are not one atomic step; the margin
// covers the gap, and what slips through anyway is harmless twice: launches are idempotent by
// ClientToken, and start/stop/terminate/tag repeat to the same end.
export class FencedFleet implements FleetProvider {
  readonly kind: FleetProvider['kind'];
  private readonly now: () => number;
  private readonly marginMs: number;

  constructor(
    private readonly inner: FleetProvider,
    private readonly table: RoutingTable,
    private readonly options: FencedFleetOptions,
  ) {
    this.kind = inner.kind;
    this.now = options.now ?? Date.now;
    this.marginMs = options.marginMs ?? 0;
  }

  get token(): number {
    return this.options.token;
  }

  // Reading changes nothing: a stale leader may look.
  list(): Promise<FleetInstance[]> {
    return this.inner.list();
  }

  async launch(req: LaunchRequest): Promise<FleetInstance> {
    await this.fence(`launch a ${req.platform} instance for ${req.project ?? 'the pool'}`);
    return this.inner.launch(req);
  }

  async start(instanceIds: readonly string[]): Promise<void> {
    await this.fence(`start ${instanceIds.join(', ')}`);
    await this.inner.start(instanceIds);
  }

  async stop(instanceIds: readonly string[]): Promise<void> {
    await this.fence(`stop ${instanceIds.join(', ')}`);
    await this.inner.stop(instanceIds);
  }

  async terminate(instanceIds: readonly string[]): Promise<void> {
    await this.fence(`terminate ${instanceIds.join(', ')}`);
    await this.inner.terminate(instanceIds);
  }

  async setProject(instanceId: string, project: string | undefined): Promise<void> {
    await this.fence(`set the project of ${instanceId} to ${project ?? '(pool)'}`);
    await this.inner.setProject(instanceId, project);
  }

  private async fence(what: string): Promise<void> {
    const { name, token } = this.options;
    const nowMs = this.now();
    if (!(await this.table.checkFence(name, token, nowMs + this.marginMs))) {
      throw new GatewayError(
        'STALE_LEADER',
        `fleet leadership '${name}' token ${token} is no longer current at ${nowMs}${this.marginMs > 0 ? ` (+${this.marginMs} ms margin)` : ''}: superseded by a newer leader or expired; refused to ${what}`,
      );
    }
  }
}
