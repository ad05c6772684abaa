import type { Platform } from '@slipway/proto';

// Where builder VMs come from. `local` is the agents an operator runs by hand (dev, tests): it
// can neither launch nor stop anything. `ec2` manages instances through the EC2 API. The fleet
// reconciler (one leader across replicas) is the only caller of the mutating methods.

export type FleetInstanceState = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';

export interface FleetInstance {
  /** EC2 instance id; for the local fleet, the agent id. An agent on this instance registers with this id. */
  instanceId: string;
  platform: Platform;
  state: FleetInstanceState;
  /** The project whose cache the instance holds (tag `slipway:project`), or undefined for a pool instance. */
  project: string | undefined;
  launchedAtMs: number;
  /** When the fleet last stopped it (tag `slipway:stopped-at`), for cache retention. */
  stoppedAtMs: number | undefined;
}

export interface LaunchRequest {
  platform: Platform;
  /** Tag the instance (and its volumes) for this project from launch; undefined launches a pool instance. */
  project: string | undefined;
  /** Idempotency key: retrying a launch with the same token never starts a second instance. */
  clientToken: string;
}

export interface FleetProvider {
  readonly kind: 'local' | 'ec2';
  /** Instances of this fleet that are not terminated. */
  list(): Promise<FleetInstance[]>;
  launch(req: LaunchRequest): Promise<FleetInstance>;
  start(instanceIds: readonly string[]): Promise<void>;
  /** Stops instances (their disks and cache stay) and records when. */
  stop(instanceIds: readonly string[]): Promise<void>;
  /** Terminates instances; their cache is gone for good. */
  terminate(instanceIds: readonly string[]): Promise<void>;
  /** Claims a pool instance for a project (or returns it to the pool with undefined). */
  setProject(instanceId: string, project: string | undefined): Promise<void>;
}
