import { Header, type Platform } from '@slipway/proto';
import type { FleetInstanceState } from './fleet/fleetProvider.js';
import { GatewayError } from './gatewayError.js';
import type { InstanceIdentityVerifier, VerifiedInstanceIdentity } from './instanceIdentityVerifier.js';
import type { AgentIdentity } from './tokenVerifier.js';

// Whether an agent connection may join, and as what. The join token says which fleet the agent may
// join and under which id; on EC2 the signed instance identity document says which instance it
// runs on; the fleet's own record says what that instance was launched for. An agent is admitted
// only when all three agree, so it can register only as the builder the fleet launched.

/** What the fleet knows about one of its instances (from the fleet provider or the routing table). */
export interface FleetInstanceFacts {
  fleet: string;
  platform: Platform;
  /** The project whose cache the instance holds, or undefined for a pool instance. */
  project: string | undefined;
  state: FleetInstanceState;
  /** Where the fleet launched it, when known (the ec2 fleet's region); checked against the document. */
  region?: string;
  /** The account the fleet launched it in, when known; checked against the document. */
  accountId?: string;
}

/** Looks an instance up in the fleet; undefined when the fleet has no such instance. */
export type InstanceLookup = (instanceId: string) => FleetInstanceFacts | undefined | Promise<FleetInstanceFacts | undefined>;

export interface AgentAdmissionOptions {
  /** Verifies instance identity documents; undefined when no AWS certificates are configured. */
  verifier: InstanceIdentityVerifier | undefined;
  lookupInstance: InstanceLookup;
  /** Refuse agents that present no instance identity (a fleet of EC2 builders). Needs a verifier. */
  requireInstanceIdentity: boolean;
  /** Same allowance as the token verifier's, so a token it accepted is not refused here for skew. Default 30 s. */
  clockToleranceMs?: number;
  now?: () => number;
}

export interface AgentAdmissionRequest {
  /** The join token, as TokenVerifier.verifyAgent returned it. */
  token: AgentIdentity;
  /** The platform the agent announced (slipway-agent-platform), already known to be a platform. */
  platform: Platform;
  /** The slipway-instance-document header, undefined when absent. */
  instanceDocument: string | undefined;
  /** The slipway-instance-signature header, undefined when absent. */
  instanceSignature: string | undefined;
}

export interface AdmittedAgent {
  agentId: string;
  fleet: string;
  /** Set when the agent proved its instance; then the agent id is this instance id. */
  instanceId?: string;
  /** The project the fleet launched (or claimed) the instance for; undefined for a pool instance or an agent without an instance. */
  project?: string;
  /** The verified document, for logs. */
  instance?: VerifiedInstanceIdentity;
}

const DEFAULT_CLOCK_TOLERANCE_MS = 30_000;
// A VM on its way out of existence has no business joining; a stopped or stopping one may be the
// fleet's record lagging behind a start, and is left to the next reconcile.
const GONE_STATES: ReadonlySet<FleetInstanceState> = new Set(['shutting-down', 'terminated']);
const ARCHITECTURE_PLATFORM: Readonly<Record<string, Platform>> = { x86_64: 'linux/amd64', arm64: 'linux/arm64' };

export class AgentAdmission {
  readonly #options: AgentAdmissionOptions;
  readonly #now: () => number;
  readonly #clockToleranceMs: number;

  constructor(options: AgentAdmissionOptions) {
    if (options.requireInstanceIdentity && options.verifier === undefined) {
      throw new GatewayError('CONFIG_INVALID', 'agents must present an instance identity, but no AWS certificates are configured to verify one');
    }
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#clockToleranceMs = options.clockToleranceMs ?? DEFAULT_CLOCK_TOLERANCE_MS;
  }

  /** Admits the agent, or throws UNAUTHENTICATED / FORBIDDEN naming what did not match. */
  async admit(request: AgentAdmissionRequest): Promise<AdmittedAgent> {
    const { token, platform } = request;
    const who = `agent '${token.agentId}' (fleet ${token.fleet})`;
    // verifyAgent refused it if it had expired by then; this holds the line for a verified result
    // kept around (a cache, a slow lookup) past the token's life: a join token is for joining.
    const nowMs = this.#now();
    if (token.expiresAt.getTime() + this.#clockToleranceMs <= nowMs) {
      throw new GatewayError('UNAUTHENTICATED', `${who}: join token expired at ${token.expiresAt.toISOString()}; it is now ${new Date(nowMs).toISOString()}`);
    }

    const { instanceDocument, instanceSignature } = request;
    const hasDocument = instanceDocument !== undefined && instanceDocument !== '';
    const hasSignature = instanceSignature !== undefined && instanceSignature !== '';
    if (hasDocument !== hasSignature) {
      const [sent, missing] = hasDocument ? [Header.instanceDocument, Header.instanceSignature] : [Header.instanceSignature, Header.instanceDocument];
      throw new GatewayError('UNAUTHENTICATED', `${who} sent ${sent} without ${missing}; an instance identity needs both`);
    }
    // A fleet-scoped join token (sub `fleet:<fleet>`) is what a launch template can carry: the
    // same for every instance of the fleet. It admits only an agent whose signed instance
    // identity is an instance of that fleet, and that agent joins as its instance id.
    const fleetScoped = token.agentId === fleetScopedAgentId(token.fleet);
    if (!hasDocument) {
      if (fleetScoped) {
        throw new GatewayError('UNAUTHENTICATED', `${who}: a fleet join token admits only an agent that proves its instance (${Header.instanceDocument}); run the agent with --identity imds`);
      }
      if (this.#options.requireInstanceIdentity) {
        throw new GatewayError(
          'UNAUTHENTICATED',
          `${who} presented no instance identity (${Header.instanceDocument}); this fleet admits only agents that prove their EC2 instance (run the agent with --identity imds)`,
        );
      }
      return { agentId: token.agentId, fleet: token.fleet };
    }

    const verifier = this.#options.verifier;
    if (verifier === undefined) {
      throw new GatewayError('UNAUTHENTICATED', `${who} presented an instance identity, but this gateway has no AWS certificates configured to verify it`);
    }
    const identity = verifier.verify(instanceDocument!, instanceSignature!);
    const { instanceId } = identity;
    if (!fleetScoped && token.agentId !== instanceId) {
      throw new GatewayError('FORBIDDEN', `${who}: the join token is for agent '${token.agentId}' but the instance identity document is for instance ${instanceId}; an agent on EC2 joins as its instance id`);
    }

    const facts = await this.#options.lookupInstance(instanceId);
    if (facts === undefined) {
      throw new GatewayError('FORBIDDEN', `${who}: instance ${instanceId} (account ${identity.accountId}, ${identity.region}) is not an instance this fleet launched`);
    }
    if (facts.fleet !== token.fleet) {
      throw new GatewayError('FORBIDDEN', `${who}: instance ${instanceId} belongs to fleet ${facts.fleet}, not to fleet ${token.fleet} named by the join token`);
    }
    if (GONE_STATES.has(facts.state)) {
      throw new GatewayError('FORBIDDEN', `${who}: instance ${instanceId} is ${facts.state}; it cannot join`);
    }
    if (facts.region !== undefined && facts.region !== identity.region) {
      throw new GatewayError('FORBIDDEN', `${who}: the fleet launched instance ${instanceId} in ${facts.region} but its identity document says ${identity.region}`);
    }
    if (facts.accountId !== undefined && facts.accountId !== identity.accountId) {
      throw new GatewayError('FORBIDDEN', `${who}: the fleet launched instance ${instanceId} in account ${facts.accountId} but its identity document says ${identity.accountId}`);
    }
    const instancePlatform = ARCHITECTURE_PLATFORM[identity.architecture];
    if (instancePlatform === undefined) {
      throw new GatewayError('FORBIDDEN', `${who}: instance ${instanceId} is ${identity.architecture}; builders are x86_64 (linux/amd64) or arm64 (linux/arm64)`);
    }
    if (instancePlatform !== platform) {
      throw new GatewayError('FORBIDDEN', `${who} announced ${platform} but instance ${instanceId} is ${identity.architecture} (${instancePlatform})`);
    }
    if (facts.platform !== instancePlatform) {
      throw new GatewayError('FORBIDDEN', `${who}: the fleet launched instance ${instanceId} as a ${facts.platform} builder but it is ${identity.architecture} (${instancePlatform})`);
    }
    return {
      agentId: instanceId,
      fleet: token.fleet,
      instanceId,
      ...(facts.project !== undefined ? { project: facts.project } : {}),
      instance: identity,
    };
  }
}

/** The agent id (token `sub`) of a join token valid for any instance of the fleet. */
export function fleetScopedAgentId(fleet: string): string {
  return `fleet:${fleet}`;
}
