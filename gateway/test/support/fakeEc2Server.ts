// A stand-in for the EC2 Query API on 127.0.0.1, so the fleet provider is tested through the real
// @aws-sdk/client-ec2 over a real socket: the SDK serializes, signs and parses exactly as it would
// against AWS, and the tests see what it actually sent (the call log).
//
// It keeps what the builder fleet relies on faithful to EC2: form-encoded requests, XML answers in
// the 2016-11-15 namespace, EC2's error envelope and HTTP statuses, instance state transitions,
// ClientToken idempotency, tag filters with wildcards, MaxResults/NextToken paging, and DryRun
// answering DryRunOperation (412) or UnauthorizedOperation (403). Everything else is left out.
//
// State transitions settle lazily: an instance entering pending/stopping/shutting-down records
// when it may settle, and every request (and every inspection through this class) first settles
// what is due. With the default delay of 0 the call that started a transition still reports the
// intermediate state and the next one sees the settled state, with no timers to race against;
// 'manual' holds intermediate states until settle() is called.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes, randomUUID } from 'node:crypto';

export const EC2_API_VERSION = '2016-11-15';
export const EC2_XML_NAMESPACE = `http://ec2.amazonaws.com/doc/${EC2_API_VERSION}/`;

/** Region and static credentials a client of the fake signs with; the fake checks only that a request is signed. */
export const FAKE_EC2_REGION = 'us-east-1';
export const FAKE_EC2_CREDENTIALS = { accessKeyId: 'AKIDFAKEEC2EXAMPLE', secretAccessKey: 'fake-secret-key' } as const;

export type FakeArchitecture = 'x86_64' | 'arm64';
export type FakeInstanceState = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';

const STATE_CODES: Record<FakeInstanceState, number> = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
};

export interface FakeLaunchTemplate {
  id: string;
  name: string;
  architecture: FakeArchitecture;
  instanceType: string;
  /** Highest version number that exists; `$Latest`, `$Default` and 1..latestVersion are accepted. Default 1. */
  latestVersion?: number;
  imageId?: string;
}

export interface FakeEc2Options {
  templates: readonly FakeLaunchTemplate[];
  /** How long pending, stopping and shutting-down last; 'manual' holds them until settle(). Default 0. */
  transitionDelayMs?: number | 'manual';
  /** Clock for transitions and launch times. */
  now?: () => number;
  /** Answer for DescribeInstances without MaxResults (EC2 pages at 1000). */
  defaultPageSize?: number;
  availabilityZone?: string;
}

export interface FakeEc2Call {
  action: string;
  /** The form parameters as sent, without Action and Version. */
  params: Readonly<Record<string, string>>;
  dryRun: boolean;
  status: number;
  /** The EC2 error code answered, if the call failed. */
  errorCode: string | undefined;
}

export interface FakeEc2Volume {
  readonly volumeId: string;
  readonly deviceName: string;
  readonly deleteOnTermination: boolean;
  readonly tags: Map<string, string>;
}

export interface FakeEc2Instance {
  readonly instanceId: string;
  readonly reservationId: string;
  readonly launchTemplateId: string | undefined;
  readonly instanceType: string;
  readonly architecture: FakeArchitecture;
  readonly imageId: string;
  readonly launchTime: Date;
  readonly clientToken: string | undefined;
  readonly privateIpAddress: string;
  readonly state: FakeInstanceState;
  /** Tests may edit tags directly to simulate changes made outside the fleet. */
  readonly tags: Map<string, string>;
  readonly volumes: readonly FakeEc2Volume[];
}

export interface SeedInstance {
  architecture: FakeArchitecture;
  instanceType?: string;
  state?: FakeInstanceState;
  tags?: Record<string, string>;
  volumeTags?: Record<string, string>;
  launchTime?: Date;
}

export interface InjectedFault {
  /** Only calls of this action take the fault; any action when absent. */
  action?: string;
  code: string;
  message: string;
  status: number;
}

interface MutableVolume {
  volumeId: string;
  deviceName: string;
  deleteOnTermination: boolean;
  tags: Map<string, string>;
}

interface MutableInstance {
  instanceId: string;
  reservationId: string;
  launchTemplateId: string | undefined;
  instanceType: string;
  architecture: FakeArchitecture;
  imageId: string;
  launchTime: Date;
  clientToken: string | undefined;
  privateIpAddress: string;
  state: FakeInstanceState;
  tags: Map<string, string>;
  volumes: MutableVolume[];
  transition: { to: FakeInstanceState; dueAtMs: number } | undefined;
}

interface Reservation {
  reservationId: string;
  instanceIds: string[];
}

class Ec2Fault extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

type Params = Record<string, string>;
type Handler = (params: Params, dryRun: boolean) => string;

const OWNER_ID = '123456789012';
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_TAGS = 50;
const CLIENT_TOKEN_MAX = 64;

export class FakeEc2Server {
  /** Every request that reached an action, in arrival order. */
  readonly calls: FakeEc2Call[] = [];

  private readonly server: http.Server;
  private readonly templates: readonly FakeLaunchTemplate[];
  private readonly now: () => number;
  private readonly defaultPageSize: number;
  private readonly availabilityZone: string;
  private transitionDelayMs: number | 'manual';
  private readonly instancesById = new Map<string, MutableInstance>();
  private readonly volumesById = new Map<string, MutableVolume>();
  private readonly reservations = new Map<string, Reservation>();
  private readonly clientTokens = new Map<string, { fingerprint: string; reservationId: string }>();
  private readonly denied = new Set<string>();
  private readonly faults: InjectedFault[] = [];
  private readonly handlers: Record<string, Handler>;
  private nextIp = 10;
  private url_ = '';

  private constructor(options: FakeEc2Options) {
    this.templates = options.templates;
    this.now = options.now ?? Date.now;
    this.transitionDelayMs = options.transitionDelayMs ?? 0;
    this.defaultPageSize = options.defaultPageSize ?? 1000;
    this.availabilityZone = options.availabilityZone ?? 'us-east-1a';
    this.handlers = {
      RunInstances: (p, d) => this.runInstances(p, d),
      StartInstances: (p, d) => this.startInstances(p, d),
      StopInstances: (p, d) => this.stopInstances(p, d),
      TerminateInstances: (p, d) => this.terminateInstances(p, d),
      DescribeInstances: (p, d) => this.describeInstances(p, d),
      CreateTags: (p, d) => this.createTags(p, d),
      DeleteTags: (p, d) => this.deleteTags(p, d),
    };
    this.server = http.createServer((req, res) => this.onRequest(req, res));
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  static async start(options: FakeEc2Options): Promise<FakeEc2Server> {
    const fake = new FakeEc2Server(options);
    await new Promise<void>((resolve, reject) => {
      fake.server.once('error', reject);
      fake.server.listen(0, '127.0.0.1', () => {
        fake.server.off('error', reject);
        resolve();
      });
    });
    const { port } = fake.server.address() as AddressInfo;
    fake.url_ = `http://127.0.0.1:${port}`;
    return fake;
  }

  /** The endpoint to give the SDK. */
  get url(): string {
    return this.url_;
  }

  /** Settings for an EC2Client of the SDK that talks to this fake and never retries on its own. */
  clientConfig(): { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string }; maxAttempts: number } {
    return { endpoint: this.url_, region: FAKE_EC2_REGION, credentials: { ...FAKE_EC2_CREDENTIALS }, maxAttempts: 1 };
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // The SDK keeps connections alive; without this close() would wait for them to idle out.
    this.server.closeAllConnections();
    await closed;
  }

  // ---- controls -------------------------------------------------------------------------------

  callsOf(action: string): FakeEc2Call[] {
    return this.calls.filter((c) => c.action === action);
  }

  /** Answers the next `count` calls (any action) with RequestLimitExceeded, HTTP 503, as EC2 throttles. */
  throttleNext(count: number): void {
    for (let i = 0; i < count; i++) {
      this.faults.push({ code: 'RequestLimitExceeded', message: 'Request limit exceeded.', status: 503 });
    }
  }

  /** Answers the next call (of `fault.action`, or any) with this error instead of performing it. */
  failNext(fault: InjectedFault): void {
    this.faults.push(fault);
  }

  /** The caller lacks the IAM permission for `action`: dry runs and real calls get UnauthorizedOperation. */
  deny(action: string): void {
    this.denied.add(action);
  }

  allow(action: string): void {
    this.denied.delete(action);
  }

  setTransitionDelay(delayMs: number | 'manual'): void {
    this.transitionDelayMs = delayMs;
  }

  /** Completes pending transitions now: of one instance, or of all. */
  settle(instanceId?: string): void {
    for (const inst of this.instancesById.values()) {
      if (instanceId !== undefined && inst.instanceId !== instanceId) continue;
      if (inst.transition) this.complete(inst);
    }
  }

  instance(instanceId: string): FakeEc2Instance | undefined {
    this.settleDue();
    return this.instancesById.get(instanceId);
  }

  /** All instances ever launched (terminated ones included, as EC2 shows them for a while). */
  instances(): FakeEc2Instance[] {
    this.settleDue();
    return [...this.instancesById.values()];
  }

  volume(volumeId: string): FakeEc2Volume | undefined {
    return this.volumesById.get(volumeId);
  }

  /** Puts an instance in place without a launch, e.g. one someone created by hand. */
  seedInstance(seed: SeedInstance): FakeEc2Instance {
    const reservationId = newId('r');
    const inst = this.createInstance({
      reservationId,
      launchTemplateId: undefined,
      instanceType: seed.instanceType ?? (seed.architecture === 'arm64' ? 'm7gd.large' : 'm6id.large'),
      architecture: seed.architecture,
      imageId: 'ami-0seed0000000000',
      clientToken: undefined,
      instanceTags: new Map(Object.entries(seed.tags ?? {})),
      volumeTags: new Map(Object.entries(seed.volumeTags ?? {})),
    });
    inst.state = seed.state ?? 'running';
    if (seed.launchTime) inst.launchTime = seed.launchTime;
    if (inst.state === 'terminated') this.dropVolumes(inst);
    this.reservations.set(reservationId, { reservationId, instanceIds: [inst.instanceId] });
    return inst;
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.on('error', () => {});
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const requestId = randomUUID();
      if (size > MAX_BODY_BYTES) {
        this.sendError(res, requestId, new Ec2Fault('RequestEntityTooLarge', 'The request body is too large.', 413));
        return;
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const params: Params = {};
      for (const [k, v] of form) params[k] = v;
      this.dispatch(req, res, requestId, params);
    });
  }

  private dispatch(req: http.IncomingMessage, res: http.ServerResponse, requestId: string, all: Params): void {
    const { Action: action, Version: version, ...params } = all;
    const dryRun = params['DryRun'] === 'true';
    let status = 200;
    let errorCode: string | undefined;
    try {
      if (req.method !== 'POST') throw new Ec2Fault('InvalidAction', `This fake answers POST only; got ${req.method}.`);
      const auth = req.headers.authorization ?? '';
      if (!auth.startsWith('AWS4-HMAC-SHA256 ')) {
        throw new Ec2Fault('AuthFailure', 'AWS was not able to validate the provided access credentials', 401);
      }
      if (!action) throw new Ec2Fault('MissingAction', 'The request must contain the parameter Action');
      if (version !== EC2_API_VERSION) {
        throw new Ec2Fault('NoSuchVersion', `The requested version (${version ?? 'none'}) is not supported; this fake speaks ${EC2_API_VERSION}.`);
      }
      const handler = this.handlers[action];
      if (!handler) throw new Ec2Fault('InvalidAction', `The action ${action} is not valid for this web service.`);
      this.settleDue();
      const faultAt = this.faults.findIndex((f) => f.action === undefined || f.action === action);
      if (faultAt >= 0) {
        const fault = this.faults.splice(faultAt, 1)[0]!;
        throw new Ec2Fault(fault.code, fault.message, fault.status);
      }
      const inner = handler(params, dryRun);
      const body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${EC2_XML_NAMESPACE}">` +
        `<requestId>${requestId}</requestId>${inner}</${action}Response>`;
      res.writeHead(200, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId });
      res.end(body);
    } catch (err) {
      const fault = err instanceof Ec2Fault ? err : new Ec2Fault('InternalError', `fake EC2 failed: ${String(err)}`, 500);
      status = fault.status;
      errorCode = fault.code;
      this.sendError(res, requestId, fault);
    }
    if (action) this.calls.push({ action, params, dryRun, status, errorCode });
  }

  private sendError(res: http.ServerResponse, requestId: string, fault: Ec2Fault): void {
    const body =
      `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${escapeXml(fault.code)}</Code>` +
      `<Message>${escapeXml(fault.message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`;
    res.writeHead(fault.status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId });
    res.end(body);
  }

  // Permission is checked after the request is understood and before anything changes, as EC2 does.
  private authorize(action: string, dryRun: boolean): void {
    if (this.denied.has(action)) {
      throw new Ec2Fault('UnauthorizedOperation', `You are not authorized to perform this operation. (fake: ec2:${action} is denied)`, 403);
    }
    if (dryRun) throw new Ec2Fault('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412);
  }

  // ---- actions --------------------------------------------------------------------------------

  private runInstances(params: Params, dryRun: boolean): string {
    const minCount = readCount(params, 'MinCount');
    const maxCount = readCount(params, 'MaxCount');
    if (minCount > maxCount) {
      throw new Ec2Fault('InvalidParameterValue', `MinCount (${minCount}) must not exceed MaxCount (${maxCount}).`);
    }
    const template = this.resolveTemplate(params);
    const instanceType = params['InstanceType'] ?? template.instanceType;
    const instanceTags = new Map<string, string>();
    const volumeTags = new Map<string, string>();
    for (const spec of indexedStructs(params, 'TagSpecification')) {
      const type = spec['ResourceType'];
      const tags = readTags(spec, true);
      if (type === 'instance') mergeTags(instanceTags, tags, type);
      else if (type === 'volume') mergeTags(volumeTags, tags, type);
      else if (type !== 'network-interface' && type !== 'spot-instances-request') {
        throw new Ec2Fault('InvalidParameterValue', `'${type ?? ''}' is not a valid taggable resource type for this operation.`);
      }
    }
    const clientToken = params['ClientToken'];
    if (clientToken !== undefined && (clientToken.length > CLIENT_TOKEN_MAX || !/^[\x20-\x7e]*$/.test(clientToken))) {
      throw new Ec2Fault('InvalidParameterValue', `ClientToken must be at most ${CLIENT_TOKEN_MAX} ASCII characters.`);
    }
    this.authorize('RunInstances', dryRun);

    if (clientToken) {
      const fingerprint = fingerprintOf(params, ['ClientToken', 'DryRun']);
      const previous = this.clientTokens.get(clientToken);
      if (previous) {
        if (previous.fingerprint !== fingerprint) {
          throw new Ec2Fault(
            'IdempotentParameterMismatch',
            'Arguments on this idempotent request are inconsistent with arguments used in previous request(s).',
          );
        }
        return this.reservationXml(this.reservations.get(previous.reservationId)!);
      }
    }
    const reservation: Reservation = { reservationId: newId('r'), instanceIds: [] };
    for (let i = 0; i < maxCount; i++) {
      const inst = this.createInstance({
        reservationId: reservation.reservationId,
        launchTemplateId: template.id,
        instanceType,
        architecture: template.architecture,
        imageId: template.imageId ?? 'ami-0fa4e0000000000',
        clientToken,
        instanceTags,
        volumeTags,
      });
      this.beginTransition(inst, 'pending', 'running');
      reservation.instanceIds.push(inst.instanceId);
    }
    this.reservations.set(reservation.reservationId, reservation);
    if (clientToken) {
      this.clientTokens.set(clientToken, { fingerprint: fingerprintOf(params, ['ClientToken', 'DryRun']), reservationId: reservation.reservationId });
    }
    return this.reservationXml(reservation);
  }

  private resolveTemplate(params: Params): FakeLaunchTemplate {
    const id = params['LaunchTemplate.LaunchTemplateId'];
    const name = params['LaunchTemplate.LaunchTemplateName'];
    const version = params['LaunchTemplate.Version'] ?? '$Default';
    if (id === undefined && name === undefined) {
      throw new Ec2Fault('MissingParameter', 'The request must contain the parameter LaunchTemplate (this fake launches from templates only).');
    }
    if (id !== undefined && name !== undefined) {
      throw new Ec2Fault('InvalidParameterCombination', 'Specify either LaunchTemplateId or LaunchTemplateName, not both.');
    }
    const template =
      id !== undefined ? this.templates.find((t) => t.id === id) : this.templates.find((t) => t.name === name);
    if (!template) {
      if (id !== undefined) {
        throw new Ec2Fault('InvalidLaunchTemplateId.NotFound', `The specified launch template, with template ID ${id}, does not exist.`);
      }
      throw new Ec2Fault('InvalidLaunchTemplateName.NotFoundException', `The specified launch template, with template name ${name}, does not exist.`);
    }
    const latest = template.latestVersion ?? 1;
    const number = Number(version);
    if (version !== '$Latest' && version !== '$Default' && !(Number.isInteger(number) && number >= 1 && number <= latest)) {
      throw new Ec2Fault(
        'InvalidLaunchTemplateId.VersionNotFound',
        `Could not find launch template version ${version} for launch template ${template.id}.`,
      );
    }
    return template;
  }

  private startInstances(params: Params, dryRun: boolean): string {
    const instances = this.instancesFor(params, 'InstanceId');
    this.authorize('StartInstances', dryRun);
    for (const inst of instances) {
      if (inst.state === 'stopping' || inst.state === 'shutting-down' || inst.state === 'terminated') {
        throw incorrectState(inst, 'started');
      }
    }
    return this.stateChangesXml(instances, (inst) => {
      if (inst.state === 'stopped') this.beginTransition(inst, 'pending', 'running');
    });
  }

  private stopInstances(params: Params, dryRun: boolean): string {
    const instances = this.instancesFor(params, 'InstanceId');
    this.authorize('StopInstances', dryRun);
    for (const inst of instances) {
      if (inst.state === 'pending' || inst.state === 'shutting-down' || inst.state === 'terminated') {
        throw incorrectState(inst, 'stopped');
      }
    }
    return this.stateChangesXml(instances, (inst) => {
      if (inst.state === 'running') this.beginTransition(inst, 'stopping', 'stopped');
    });
  }

  private terminateInstances(params: Params, dryRun: boolean): string {
    const instances = this.instancesFor(params, 'InstanceId');
    this.authorize('TerminateInstances', dryRun);
    return this.stateChangesXml(instances, (inst) => {
      if (inst.state !== 'terminated' && inst.state !== 'shutting-down') this.beginTransition(inst, 'shutting-down', 'terminated');
    });
  }

  private describeInstances(params: Params, dryRun: boolean): string {
    const ids = indexedValues(params, 'InstanceId');
    const filters = indexedStructs(params, 'Filter').map((f) => ({ name: f['Name'] ?? '', values: indexedValues(f, 'Value') }));
    const maxRaw = params['MaxResults'];
    if (maxRaw !== undefined && ids.length > 0) {
      throw new Ec2Fault('InvalidParameterCombination', 'The parameter instancesSet cannot be used with the parameter maxResults');
    }
    let pageSize = this.defaultPageSize;
    if (maxRaw !== undefined) {
      pageSize = Number(maxRaw);
      if (!Number.isInteger(pageSize) || pageSize < 5 || pageSize > 1000) {
        throw new Ec2Fault('InvalidParameterValue', `Value ( ${maxRaw} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.`);
      }
    }
    const matchers = filters.map((f) => filterMatcher(f.name, f.values));
    const selected = ids.length > 0 ? this.instancesFor(params, 'InstanceId') : [...this.instancesById.values()];
    this.authorize('DescribeInstances', dryRun);
    const matching = selected.filter((inst) => matchers.every((m) => m(inst)));

    const queryPrint = fingerprintOf(params, ['NextToken', 'DryRun']).slice(0, 12);
    let offset = 0;
    const token = params['NextToken'];
    if (token !== undefined) {
      const [print, at] = Buffer.from(token, 'base64url').toString('utf8').split(':');
      offset = Number(at);
      if (print !== queryPrint || !Number.isInteger(offset) || offset < 0 || offset > matching.length) {
        throw new Ec2Fault('InvalidParameterValue', `The NextToken '${token}' is not valid for this request.`);
      }
    }
    const page = matching.slice(offset, offset + pageSize);
    const end = offset + page.length;
    const nextToken = end < matching.length ? Buffer.from(`${queryPrint}:${end}`).toString('base64url') : undefined;

    // A page lists reservations; instances of one reservation that land on the same page share it.
    const groups: { reservationId: string; instances: MutableInstance[] }[] = [];
    for (const inst of page) {
      const last = groups[groups.length - 1];
      if (last && last.reservationId === inst.reservationId) last.instances.push(inst);
      else groups.push({ reservationId: inst.reservationId, instances: [inst] });
    }
    const reservations = groups.map((g) => `<item>${this.reservationBody(g.reservationId, g.instances)}</item>`).join('');
    return `<reservationSet>${reservations}</reservationSet>${nextToken ? `<nextToken>${nextToken}</nextToken>` : ''}`;
  }

  private createTags(params: Params, dryRun: boolean): string {
    const resources = this.resourcesFor(params);
    const tags = readTags(params, false);
    if (tags.length === 0) throw new Ec2Fault('MissingParameter', 'The request must contain the parameter Tag');
    this.authorize('CreateTags', dryRun);
    for (const tagMap of resources) {
      for (const [k, v] of tags) tagMap.set(k, v ?? '');
      if (tagMap.size > MAX_TAGS) throw new Ec2Fault('TagLimitExceeded', `The maximum number of tags (${MAX_TAGS}) per resource was exceeded.`);
    }
    return '<return>true</return>';
  }

  private deleteTags(params: Params, dryRun: boolean): string {
    const resources = this.resourcesFor(params);
    const tags = readTags(params, false);
    this.authorize('DeleteTags', dryRun);
    for (const tagMap of resources) {
      // No Tag parameter at all deletes every tag; a Tag with a Value deletes only on a match.
      if (tags.length === 0) tagMap.clear();
      for (const [k, v] of tags) {
        if (v === undefined || tagMap.get(k) === v) tagMap.delete(k);
      }
    }
    return '<return>true</return>';
  }

  // ---- state ----------------------------------------------------------------------------------

  private createInstance(spec: {
    reservationId: string;
    launchTemplateId: string | undefined;
    instanceType: string;
    architecture: FakeArchitecture;
    imageId: string;
    clientToken: string | undefined;
    instanceTags: Map<string, string>;
    volumeTags: Map<string, string>;
  }): MutableInstance {
    const volume: MutableVolume = {
      volumeId: newId('vol'),
      deviceName: '/dev/xvda',
      deleteOnTermination: true,
      tags: new Map(spec.volumeTags),
    };
    const n = this.nextIp++;
    const inst: MutableInstance = {
      instanceId: newId('i'),
      reservationId: spec.reservationId,
      launchTemplateId: spec.launchTemplateId,
      instanceType: spec.instanceType,
      architecture: spec.architecture,
      imageId: spec.imageId,
      // EC2 reports launch times to the second.
      launchTime: new Date(Math.floor(this.now() / 1000) * 1000),
      clientToken: spec.clientToken,
      privateIpAddress: `10.0.${Math.floor(n / 250) % 250}.${(n % 250) + 2}`,
      state: 'pending',
      tags: new Map(spec.instanceTags),
      volumes: [volume],
      transition: undefined,
    };
    this.instancesById.set(inst.instanceId, inst);
    this.volumesById.set(volume.volumeId, volume);
    return inst;
  }

  private beginTransition(inst: MutableInstance, via: FakeInstanceState, to: FakeInstanceState): void {
    inst.state = via;
    const delay = this.transitionDelayMs;
    inst.transition = { to, dueAtMs: delay === 'manual' ? Infinity : this.now() + delay };
  }

  private settleDue(): void {
    const now = this.now();
    for (const inst of this.instancesById.values()) {
      // Runs before each request is handled, so even with a delay of 0 the request that began a
      // transition reports the intermediate state.
      if (inst.transition && inst.transition.dueAtMs <= now) this.complete(inst);
    }
  }

  private complete(inst: MutableInstance): void {
    if (!inst.transition) return;
    inst.state = inst.transition.to;
    inst.transition = undefined;
    if (inst.state === 'terminated') this.dropVolumes(inst);
  }

  private dropVolumes(inst: MutableInstance): void {
    const kept = inst.volumes.filter((v) => !v.deleteOnTermination);
    for (const v of inst.volumes) if (v.deleteOnTermination) this.volumesById.delete(v.volumeId);
    inst.volumes = kept;
  }

  private instancesFor(params: Params, prefix: string): MutableInstance[] {
    const ids = indexedValues(params, prefix);
    if (ids.length === 0) throw new Ec2Fault('MissingParameter', `The request must contain the parameter ${prefix}`);
    const malformed = ids.filter((id) => !/^i-[0-9a-f]{8,17}$/.test(id));
    if (malformed.length > 0) throw new Ec2Fault('InvalidInstanceID.Malformed', `Invalid id: "${malformed[0]}"`);
    const missing = ids.filter((id) => !this.instancesById.has(id));
    if (missing.length === 1) throw new Ec2Fault('InvalidInstanceID.NotFound', `The instance ID '${missing[0]}' does not exist`);
    if (missing.length > 1) throw new Ec2Fault('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
    return [...new Set(ids)].map((id) => this.instancesById.get(id)!);
  }

  private resourcesFor(params: Params): Map<string, string>[] {
    const ids = indexedValues(params, 'ResourceId');
    if (ids.length === 0) throw new Ec2Fault('MissingParameter', 'The request must contain the parameter ResourceId');
    return ids.map((id) => {
      if (/^i-[0-9a-f]{8,17}$/.test(id)) {
        const inst = this.instancesById.get(id);
        if (!inst) throw new Ec2Fault('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
        return inst.tags;
      }
      if (/^vol-[0-9a-f]{8,17}$/.test(id)) {
        const vol = this.volumesById.get(id);
        if (!vol) throw new Ec2Fault('InvalidVolume.NotFound', `The volume '${id}' does not exist.`);
        return vol.tags;
      }
      throw new Ec2Fault('InvalidID', `The ID '${id}' is not valid`);
    });
  }

  // ---- XML ------------------------------------------------------------------------------------

  private reservationXml(reservation: Reservation): string {
    return this.reservationBody(
      reservation.reservationId,
      reservation.instanceIds.map((id) => this.instancesById.get(id)!),
    );
  }

  private reservationBody(reservationId: string, instances: readonly MutableInstance[]): string {
    return (
      `<reservationId>${reservationId}</reservationId><ownerId>${OWNER_ID}</ownerId><groupSet/>` +
      `<instancesSet>${instances.map((i) => this.instanceXml(i)).join('')}</instancesSet>`
    );
  }

  private instanceXml(inst: MutableInstance): string {
    const volumes = inst.volumes
      .map(
        (v) =>
          `<item><deviceName>${v.deviceName}</deviceName><ebs><volumeId>${v.volumeId}</volumeId><status>attached</status>` +
          `<attachTime>${isoTime(inst.launchTime)}</attachTime><deleteOnTermination>${v.deleteOnTermination}</deleteOnTermination></ebs></item>`,
      )
      .join('');
    return (
      `<item><instanceId>${inst.instanceId}</instanceId><imageId>${escapeXml(inst.imageId)}</imageId>` +
      stateXml('instanceState', inst.state) +
      `<privateDnsName>ip-${inst.privateIpAddress.replaceAll('.', '-')}.ec2.internal</privateDnsName><dnsName/><reason/>` +
      `<amiLaunchIndex>0</amiLaunchIndex><productCodes/><instanceType>${escapeXml(inst.instanceType)}</instanceType>` +
      `<launchTime>${isoTime(inst.launchTime)}</launchTime>` +
      `<placement><availabilityZone>${escapeXml(this.availabilityZone)}</availabilityZone><groupName/><tenancy>default</tenancy></placement>` +
      `<monitoring><state>disabled</state></monitoring><privateIpAddress>${inst.privateIpAddress}</privateIpAddress><groupSet/>` +
      `<architecture>${inst.architecture}</architecture><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName>` +
      `<blockDeviceMapping>${volumes}</blockDeviceMapping><virtualizationType>hvm</virtualizationType>` +
      (inst.clientToken ? `<clientToken>${escapeXml(inst.clientToken)}</clientToken>` : '') +
      tagSetXml(inst.tags) +
      `<ebsOptimized>true</ebsOptimized></item>`
    );
  }

  private stateChangesXml(instances: readonly MutableInstance[], change: (inst: MutableInstance) => void): string {
    const items = instances.map((inst) => {
      const previous = inst.state;
      change(inst);
      return `<item><instanceId>${inst.instanceId}</instanceId>${stateXml('currentState', inst.state)}${stateXml('previousState', previous)}</item>`;
    });
    return `<instancesSet>${items.join('')}</instancesSet>`;
  }
}

// ---- helpers ------------------------------------------------------------------------------------

/** Escapes text for an XML element or attribute; CR and TAB as references so parsers keep them. */
export function escapeXml(value: string): string {
  return value.replace(/[&<>"'\r\t]/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      case "'":
        return '&apos;';
      case '\r':
        return '&#13;';
      default:
        return '&#9;';
    }
  });
}

/** Values of `Prefix.1`, `Prefix.2`, ... in index order (EC2's flattened lists). */
export function indexedValues(params: Readonly<Params>, prefix: string): string[] {
  const found: [number, string][] = [];
  const re = new RegExp(`^${escapeRegExp(prefix)}\\.(\\d+)$`);
  for (const [k, v] of Object.entries(params)) {
    const m = re.exec(k);
    if (m) found.push([Number(m[1]), v]);
  }
  return found.sort((a, b) => a[0] - b[0]).map(([, v]) => v);
}

/** Members of `Prefix.N.Member...` grouped by N, in index order, keyed by what follows `Prefix.N.`. */
export function indexedStructs(params: Readonly<Params>, prefix: string): Params[] {
  const groups = new Map<number, Params>();
  const re = new RegExp(`^${escapeRegExp(prefix)}\\.(\\d+)\\.(.+)$`);
  for (const [k, v] of Object.entries(params)) {
    const m = re.exec(k);
    if (!m) continue;
    const n = Number(m[1]);
    let group = groups.get(n);
    if (!group) groups.set(n, (group = {}));
    group[m[2]!] = v;
  }
  return [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([, g]) => g);
}

/** Tags under `Tag.N.Key` / `Tag.N.Value` of a request or of a TagSpecification; Value undefined when absent. */
function readTags(params: Readonly<Params>, requireValue: boolean): [string, string | undefined][] {
  const tags = indexedStructs(params, 'Tag').map((t): [string, string | undefined] => {
    const key = t['Key'];
    if (key === undefined || key === '') throw new Ec2Fault('InvalidParameterValue', 'Tag keys must not be empty.');
    if (key.length > 128) throw new Ec2Fault('InvalidParameterValue', `Tag key exceeds the maximum length of 128 characters: ${key}`);
    if (key.toLowerCase().startsWith('aws:')) throw new Ec2Fault('InvalidParameterValue', `Tag keys starting with 'aws:' are reserved: ${key}`);
    const value = t['Value'] ?? (requireValue ? '' : undefined);
    if (value !== undefined && value.length > 256) {
      throw new Ec2Fault('InvalidParameterValue', `Tag value exceeds the maximum length of 256 characters (key ${key}).`);
    }
    // Characters XML 1.0 cannot carry would make the answer unparseable; EC2 refuses them too.
    if (/[\x00-\x08\x0b\x0c\x0e-\x1f]/.test(key + (value ?? ''))) {
      throw new Ec2Fault('InvalidParameterValue', `Tag ${key} contains characters that are not allowed.`);
    }
    return [key, value];
  });
  if (tags.length > MAX_TAGS) throw new Ec2Fault('TagLimitExceeded', `The maximum number of tags (${MAX_TAGS}) per resource was exceeded.`);
  return tags;
}

function mergeTags(into: Map<string, string>, tags: readonly [string, string | undefined][], type: string): void {
  for (const [k, v] of tags) {
    if (into.has(k)) throw new Ec2Fault('InvalidParameterValue', `Tag key '${k}' is given twice for resource type ${type}.`);
    into.set(k, v ?? '');
  }
}

function filterMatcher(name: string, values: readonly string[]): (inst: MutableInstance) => boolean {
  if (values.length === 0) throw new Ec2Fault('InvalidParameterValue', `The filter '${name}' needs at least one value.`);
  const patterns = values.map(globToRegExp);
  const any = (candidate: string | undefined): boolean => candidate !== undefined && patterns.some((p) => p.test(candidate));
  if (name.startsWith('tag:')) {
    const key = name.slice(4);
    return (inst) => any(inst.tags.get(key));
  }
  switch (name) {
    case 'tag-key':
      return (inst) => [...inst.tags.keys()].some((k) => any(k));
    case 'instance-state-name':
      return (inst) => any(inst.state);
    case 'instance-state-code':
      return (inst) => any(String(STATE_CODES[inst.state]));
    case 'instance-id':
      return (inst) => any(inst.instanceId);
    case 'architecture':
      return (inst) => any(inst.architecture);
    case 'instance-type':
      return (inst) => any(inst.instanceType);
    case 'reservation-id':
      return (inst) => any(inst.reservationId);
    default:
      throw new Ec2Fault('InvalidParameterValue', `The filter '${name}' is invalid`);
  }
}

// EC2 filter values take * (any run) and ? (one character); a backslash escapes them.
function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escapeRegExp(pattern[++i]!);
    else if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else re += escapeRegExp(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function readCount(params: Params, name: string): number {
  const raw = params[name];
  if (raw === undefined) throw new Ec2Fault('MissingParameter', `The request must contain the parameter ${name}`);
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Ec2Fault('InvalidParameterValue', `Value (${raw}) for parameter ${name} is invalid.`);
  return n;
}

function fingerprintOf(params: Params, ignore: readonly string[]): string {
  const entries = Object.entries(params)
    .filter(([k]) => !ignore.includes(k))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256').update(JSON.stringify(entries)).digest('hex');
}

function incorrectState(inst: MutableInstance, verb: string): Ec2Fault {
  return new Ec2Fault('IncorrectInstanceState', `The instance '${inst.instanceId}' is not in a state from which it can be ${verb}.`);
}

function stateXml(element: string, state: FakeInstanceState): string {
  return `<${element}><code>${STATE_CODES[state]}</code><name>${state}</name></${element}>`;
}

function tagSetXml(tags: ReadonlyMap<string, string>): string {
  if (tags.size === 0) return '';
  const items = [...tags].map(([k, v]) => `<item><key>${escapeXml(k)}</key><value>${escapeXml(v)}</value></item>`);
  return `<tagSet>${items.join('')}</tagSet>`;
}


function isoTime(date: Date): string {
  return date.toISOString();
}

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(9).toString('hex').slice(0, 17)}`;
}
