import { createHash } from 'node:crypto';
import { setTimeout as sleepMs } from 'node:timers/promises';
import {
  CreateTagsCommand,
  DeleteTagsCommand,
  DescribeInstancesCommand,
  EC2Client,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type EC2ClientConfig,
  type Instance,
  type RunInstancesCommandInput,
  type Tag,
} from '@aws-sdk/client-ec2';
import { isPlatform, type Platform } from '@slipway/proto';
import { GatewayError } from '../gatewayError.js';
import type { Ec2FleetConfig, Ec2LaunchTemplateRef } from './ec2FleetConfig.js';
import type { FleetInstance, FleetInstanceState, FleetProvider, LaunchRequest } from './fleetProvider.js';

// The `ec2` fleet: builder VMs are EC2 instances launched from one launch template per platform.
// Everything the fleet owns carries the tag slipway:fleet, so list() is one tag filter and several
// fleets (or gateways of different deployments) can share an account without touching each
// other's instances.
//
// The SDK's own retries are switched off: throttling is retried here with full-jitter backoff,
// whose clock and randomness tests inject, and everything else surfaces at once as FLEET_FAILED
// for the reconciler to retry on its next pass.

export const FLEET_TAG = 'slipway:fleet';
export const PLATFORM_TAG = 'slipway:platform';
export const PROJECT_TAG = 'slipway:project';
export const STOPPED_AT_TAG = 'slipway:stopped-at';

/** Instance ids that dry-run launches hand out; no EC2 id looks like this. */
export const DRY_RUN_INSTANCE_PREFIX = 'dryrun-';

export function isDryRunInstanceId(instanceId: string): boolean {
  return instanceId.startsWith(DRY_RUN_INSTANCE_PREFIX);
}

const ARCHITECTURE_OF: Record<Platform, string> = { 'linux/amd64': 'x86_64', 'linux/arm64': 'arm64' };
const NON_TERMINATED: readonly FleetInstanceState[] = ['pending', 'running', 'stopping', 'stopped', 'shutting-down'];
const FLEET_STATES: readonly string[] = [...NON_TERMINATED, 'terminated'];
const THROTTLING_CODES = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'TooManyRequestsException']);
const THROTTLING_STATUSES = new Set([429, 503]);
// EC2 limits ClientToken to 64 ASCII characters.
const CLIENT_TOKEN = /^[\x21-\x7e]{1,64}$/;
const MAX_TAG_VALUE = 256;

/** The SDK answers DryRun calls EC2 would have allowed with this in place of a result. */
const DRY_RUN_PASSED = Symbol('dry run passed');

type Ec2Action =
  | 'RunInstances'
  | 'StartInstances'
  | 'StopInstances'
  | 'TerminateInstances'
  | 'DescribeInstances'
  | 'CreateTags'
  | 'DeleteTags';

export interface Ec2FleetProviderOptions {
  /** Credentials for the SDK; when absent the SDK's default chain (instance role, profile, ...) finds them. */
  credentials?: EC2ClientConfig['credentials'];
  /** Waits between throttled attempts. */
  sleep?: (ms: number) => Promise<void>;
  /** Uniform in [0, 1), for backoff jitter. */
  random?: () => number;
  /** Wall clock for slipway:stopped-at and dry-run launch times. */
  now?: () => number;
}

/** The one place an EC2 client is made, so every caller gets the same retry and timeout policy. */
export function createEc2Client(config: Ec2FleetConfig, credentials?: EC2ClientConfig['credentials']): EC2Client {
  return new EC2Client({
    region: config.region,
    ...(config.endpoint !== undefined ? { endpoint: config.endpoint } : {}),
    ...(credentials !== undefined ? { credentials } : {}),
    // Ec2FleetProvider retries throttling itself; SDK retries would multiply its attempts.
    maxAttempts: 1,
    // Without limits a silent endpoint would hold the fleet reconciler forever.
    requestHandler: { connectionTimeout: 10_000, requestTimeout: 60_000, throwOnRequestTimeout: true },
  });
}

export class Ec2FleetProvider implements FleetProvider {
  readonly kind = 'ec2' as const;

  private readonly client: EC2Client;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(
    private readonly config: Ec2FleetConfig,
    options: Ec2FleetProviderOptions = {},
  ) {
    this.client = createEc2Client(config, options.credentials);
    this.sleep = options.sleep ?? ((ms) => sleepMs(ms));
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
  }

  /** Closes the SDK's kept-alive connections. */
  close(): void {
    this.client.destroy();
  }

  async list(): Promise<FleetInstance[]> {
    const found = new Map<string, FleetInstance>();
    const seenTokens = new Set<string>();
    let nextToken: string | undefined;
    do {
      const token = nextToken;
      const page = await this.call('DescribeInstances', `fleet ${this.config.fleetName}`, false, () =>
        this.client.send(
          new DescribeInstancesCommand({
            Filters: [
              { Name: `tag:${FLEET_TAG}`, Values: [this.config.fleetName] },
              { Name: 'instance-state-name', Values: [...NON_TERMINATED] },
            ],
            MaxResults: this.config.describePageSize,
            NextToken: token,
          }),
        ),
      );
      if (page === DRY_RUN_PASSED) break;
      for (const reservation of page.Reservations ?? []) {
        for (const instance of reservation.Instances ?? []) {
          const mapped = this.toFleetInstance(instance, undefined);
          // Instances that change state while we page can show up on two pages.
          found.set(mapped.instanceId, mapped);
        }
      }
      nextToken = page.NextToken || undefined;
      if (nextToken !== undefined) {
        if (seenTokens.has(nextToken)) {
          throw new GatewayError('FLEET_FAILED', `EC2 DescribeInstances for fleet ${this.config.fleetName} returned the same NextToken twice; stopped paging`);
        }
        seenTokens.add(nextToken);
      }
    } while (nextToken !== undefined);
    return [...found.values()];
  }

  async launch(req: LaunchRequest): Promise<FleetInstance> {
    const template = this.config.launchTemplates[req.platform];
    if (!template) {
      throw new GatewayError(
        'FLEET_FAILED',
        `fleet ${this.config.fleetName} has no launch template for ${req.platform}; configured: ${Object.keys(this.config.launchTemplates).join(', ') || 'none'}`,
      );
    }
    if (req.project !== undefined) this.checkProject(req.project);
    const tags: Tag[] = [
      { Key: FLEET_TAG, Value: this.config.fleetName },
      { Key: PLATFORM_TAG, Value: req.platform },
      ...(req.project !== undefined ? [{ Key: PROJECT_TAG, Value: req.project }] : []),
    ];
    const target = `${req.platform} from launch template ${templateLabel(template)} (client token ${req.clientToken})`;
    const result = await this.call('RunInstances', target, true, (dryRun) =>
      this.client.send(
        new RunInstancesCommand({
          LaunchTemplate:
            template.launchTemplateId !== undefined
              ? { LaunchTemplateId: template.launchTemplateId, Version: template.version }
              : { LaunchTemplateName: template.launchTemplateName, Version: template.version },
          // The configuration checked its shape; EC2 knows which types exist.
          InstanceType: template.instanceType as RunInstancesCommandInput['InstanceType'],
          MinCount: 1,
          MaxCount: 1,
          ClientToken: ec2ClientToken(req.clientToken),
          // Volumes carry the tags too: a project's cache lives on them, and they are what
          // retention and cost reports look at once the instance is gone.
          TagSpecifications: [
            { ResourceType: 'instance', Tags: tags },
            { ResourceType: 'volume', Tags: tags },
          ],
          DryRun: dryRun,
        }),
      ),
    );
    if (result === DRY_RUN_PASSED) {
      return {
        instanceId: DRY_RUN_INSTANCE_PREFIX + createHash('sha256').update(req.clientToken).digest('hex').slice(0, 17),
        platform: req.platform,
        state: 'pending',
        project: req.project,
        launchedAtMs: this.now(),
        stoppedAtMs: undefined,
      };
    }
    const instance = result.Instances?.[0];
    if (!instance) {
      throw new GatewayError('FLEET_FAILED', `EC2 RunInstances for ${target} answered without an instance (reservation ${result.ReservationId ?? 'unknown'})`);
    }
    return this.toFleetInstance(instance, { platform: req.platform, project: req.project, template });
  }

  async start(instanceIds: readonly string[]): Promise<void> {
    const ids = this.realIds(instanceIds);
    if (ids.length === 0) return;
    await this.call('StartInstances', ids.join(', '), true, (dryRun) =>
      this.client.send(new StartInstancesCommand({ InstanceIds: ids, DryRun: dryRun })),
    );
  }

  async stop(instanceIds: readonly string[]): Promise<void> {
    const ids = this.realIds(instanceIds);
    if (ids.length === 0) return;
    await this.call('StopInstances', ids.join(', '), true, (dryRun) =>
      this.client.send(new StopInstancesCommand({ InstanceIds: ids, DryRun: dryRun })),
    );
    // Tagged after the stop succeeded, so the time is never earlier than the stop. Should tagging
    // fail, the caller retries stop(), which EC2 accepts for stopped instances, and tags again.
    const stoppedAt = new Date(this.now()).toISOString();
    await this.call('CreateTags', ids.join(', '), true, (dryRun) =>
      this.client.send(new CreateTagsCommand({ Resources: ids, Tags: [{ Key: STOPPED_AT_TAG, Value: stoppedAt }], DryRun: dryRun })),
    );
  }

  async terminate(instanceIds: readonly string[]): Promise<void> {
    const ids = this.realIds(instanceIds);
    if (ids.length === 0) return;
    await this.call('TerminateInstances', ids.join(', '), true, (dryRun) =>
      this.client.send(new TerminateInstancesCommand({ InstanceIds: ids, DryRun: dryRun })),
    );
  }

  async setProject(instanceId: string, project: string | undefined): Promise<void> {
    if (project !== undefined) this.checkProject(project);
    if (this.realIds([instanceId]).length === 0) return;
    // Reading is never a dry run: the volumes to tag are only known from the instance itself.
    const described = await this.call('DescribeInstances', instanceId, false, () =>
      this.client.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] })),
    );
    if (described === DRY_RUN_PASSED) return;
    const instance = described.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instanceId);
    if (!instance) {
      throw new GatewayError('FLEET_FAILED', `EC2 DescribeInstances did not return instance ${instanceId}; cannot set its project`);
    }
    const fleet = tagMap(instance.Tags).get(FLEET_TAG);
    if (fleet !== this.config.fleetName) {
      throw new GatewayError(
        'FLEET_FAILED',
        `instance ${instanceId} is not part of fleet ${this.config.fleetName} (its ${FLEET_TAG} tag is ${fleet === undefined ? 'absent' : `'${fleet}'`}); its project tag was left alone`,
      );
    }
    const volumeIds = (instance.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.VolumeId ? [m.Ebs.VolumeId] : []));
    const resources = [instanceId, ...volumeIds];
    const target = resources.join(', ');
    if (project !== undefined) {
      await this.call('CreateTags', target, true, (dryRun) =>
        this.client.send(new CreateTagsCommand({ Resources: resources, Tags: [{ Key: PROJECT_TAG, Value: project }], DryRun: dryRun })),
      );
    } else {
      // Key only: whatever project the tag names, the instance returns to the pool.
      await this.call('DeleteTags', target, true, (dryRun) =>
        this.client.send(new DeleteTagsCommand({ Resources: resources, Tags: [{ Key: PROJECT_TAG }], DryRun: dryRun })),
      );
    }
  }

  // ---- EC2 calls ------------------------------------------------------------------------------

  // Sends one EC2 call, retrying throttling with full-jitter exponential backoff. A mutating call
  // in dry-run mode carries DryRun=true, and EC2's DryRunOperation answer means it would have
  // been allowed.
  private async call<T>(
    action: Ec2Action,
    target: string,
    mutating: boolean,
    send: (dryRun: true | undefined) => Promise<T>,
  ): Promise<T | typeof DRY_RUN_PASSED> {
    const dryRun = mutating && this.config.dryRun;
    for (let attempt = 1; ; attempt++) {
      try {
        // Outside dry-run mode DryRun is left out rather than sent as false: the request is then
        // exactly what any other EC2 client would send.
        const result = await send(dryRun ? true : undefined);
        if (dryRun) {
          // EC2 never performs a DryRun call; an endpoint that did has ignored the flag.
          throw new GatewayError('FLEET_FAILED', `EC2 ${action} for ${target} succeeded although DryRun was set; the endpoint ignores DryRun`);
        }
        return result;
      } catch (err) {
        if (err instanceof GatewayError) throw err;
        const code = errorCode(err);
        if (dryRun && code === 'DryRunOperation') return DRY_RUN_PASSED;
        if (isThrottling(err) && attempt < this.config.throttleMaxAttempts) {
          await this.sleep(this.backoffMs(attempt));
          continue;
        }
        throw this.failure(action, target, err, attempt, dryRun);
      }
    }
  }

  private backoffMs(attempt: number): number {
    const ceiling = Math.min(this.config.throttleMaxDelayMs, this.config.throttleBaseDelayMs * 2 ** Math.min(attempt - 1, 30));
    return Math.floor(this.random() * ceiling);
  }

  private failure(action: Ec2Action, target: string, err: unknown, attempts: number, dryRun: boolean): GatewayError {
    const code = errorCode(err);
    const message = err instanceof Error ? err.message : String(err);
    const aws = code !== undefined ? `${code}: ${message}` : message;
    if (code === 'UnauthorizedOperation') {
      const also =
        action === 'RunInstances'
          ? ' (launching with tags also needs ec2:CreateTags on instances and volumes, and iam:PassRole for the template\'s instance profile)'
          : '';
      return new GatewayError(
        'FLEET_FAILED',
        `EC2 ${action}${dryRun ? ' (dry run)' : ''} for ${target} was refused: the gateway's AWS identity lacks permission ec2:${action}${also} (${aws})`,
        { cause: err },
      );
    }
    if (isThrottling(err)) {
      return new GatewayError('FLEET_FAILED', `EC2 ${action} for ${target} was still throttled after ${attempts} attempts (${aws})`, { cause: err });
    }
    return new GatewayError('FLEET_FAILED', `EC2 ${action}${dryRun ? ' (dry run)' : ''} for ${target} failed: ${aws}`, { cause: err });
  }

  // ---- mapping --------------------------------------------------------------------------------

  // `launched` is what launch() asked for: an answer to RunInstances may lack the tags.
  private toFleetInstance(
    instance: Instance,
    launched: { platform: Platform; project: string | undefined; template: Ec2LaunchTemplateRef } | undefined,
  ): FleetInstance {
    const instanceId = instance.InstanceId;
    if (!instanceId) throw new GatewayError('FLEET_FAILED', `EC2 returned an instance without an id in fleet ${this.config.fleetName}`);
    const tags = tagMap(instance.Tags);
    const platformTag = tags.get(PLATFORM_TAG);
    let platform: Platform;
    if (platformTag !== undefined && isPlatform(platformTag)) {
      platform = platformTag;
    } else if (platformTag === undefined && launched) {
      platform = launched.platform;
    } else {
      throw new GatewayError(
        'FLEET_FAILED',
        `instance ${instanceId} of fleet ${this.config.fleetName} has ${platformTag === undefined ? `no ${PLATFORM_TAG} tag` : `${PLATFORM_TAG} '${platformTag}', which is neither linux/amd64 nor linux/arm64`}`,
      );
    }
    const expected = ARCHITECTURE_OF[platform];
    if (instance.Architecture !== expected) {
      const template = launched?.template ?? this.config.launchTemplates[platform];
      throw new GatewayError(
        'FLEET_FAILED',
        `instance ${instanceId} of fleet ${this.config.fleetName} is for ${platform} but its architecture is ${instance.Architecture ?? 'unknown'}, not ${expected}` +
          (template ? `: check launch template ${templateLabel(template)}` : ''),
      );
    }
    const state = instance.State?.Name;
    if (state === undefined || !FLEET_STATES.includes(state)) {
      throw new GatewayError('FLEET_FAILED', `instance ${instanceId} of fleet ${this.config.fleetName} is in unexpected state ${state ?? 'unknown'}`);
    }
    const launchedAtMs = instance.LaunchTime?.getTime();
    if (launchedAtMs === undefined || Number.isNaN(launchedAtMs)) {
      throw new GatewayError('FLEET_FAILED', `instance ${instanceId} of fleet ${this.config.fleetName} has no launch time`);
    }
    // A stopped-at someone edited into nonsense should not take the fleet down: the reconciler
    // then knows no stop time, as for an instance stopped outside Slipway.
    const stoppedAt = tags.get(STOPPED_AT_TAG);
    const stoppedAtMs = stoppedAt !== undefined ? Date.parse(stoppedAt) : NaN;
    const project = launched && !tags.has(FLEET_TAG) ? launched.project : tags.get(PROJECT_TAG) || undefined;
    return {
      instanceId,
      platform,
      state: state as FleetInstanceState,
      project,
      launchedAtMs,
      stoppedAtMs: Number.isNaN(stoppedAtMs) ? undefined : stoppedAtMs,
    };
  }

  // In dry-run mode the ids dry-run launches handed out name nothing EC2 knows; calls about them
  // are left out (there is nothing to check them against).
  private realIds(instanceIds: readonly string[]): string[] {
    const unique = [...new Set(instanceIds)];
    return this.config.dryRun ? unique.filter((id) => !isDryRunInstanceId(id)) : unique;
  }

  private checkProject(project: string): void {
    if (project === '' || project.length > MAX_TAG_VALUE) {
      throw new GatewayError('FLEET_FAILED', `project must be 1-${MAX_TAG_VALUE} characters to fit the ${PROJECT_TAG} tag; got ${project.length} characters`);
    }
  }
}

function templateLabel(template: Ec2LaunchTemplateRef): string {
  return `${template.launchTemplateId ?? template.launchTemplateName} version ${template.version}`;
}

// EC2 keeps a ClientToken per account and region for its idempotency window; tokens that do not
// fit EC2's limits are hashed, which keeps a retry with the same token landing on the same launch.
function ec2ClientToken(token: string): string {
  return CLIENT_TOKEN.test(token) ? token : createHash('sha256').update(token).digest('hex');
}

function tagMap(tags: readonly Tag[] | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const tag of tags ?? []) if (tag.Key !== undefined) map.set(tag.Key, tag.Value ?? '');
  return map;
}

// The SDK names its service errors by EC2's error code.
function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('$metadata' in err)) return undefined;
  const name = (err as { name?: unknown }).name;
  return typeof name === 'string' ? name : undefined;
}

function isThrottling(err: unknown): boolean {
  const code = errorCode(err);
  if (code === undefined) return false;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return THROTTLING_CODES.has(code) || (status !== undefined && THROTTLING_STATUSES.has(status));
}
