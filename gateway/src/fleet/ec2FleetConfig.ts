import { Platforms, type Platform } from '@slipway/proto';
import { GatewayError } from '../gatewayError.js';

// Settings of the `ec2` fleet, read from a plain object (parsed JSON or a section the gateway's
// loadConfig assembles). Numbers and booleans may also arrive as strings, as they do from the
// environment. Every problem is collected, so an operator fixes them all in one pass.
//
// Input shape:
//   {
//     fleet: 'builders',                      // tag slipway:fleet on everything the fleet owns
//     region: 'us-east-1',
//     endpoint: 'http://127.0.0.1:4566',      // optional: an EC2-compatible endpoint (tests)
//     dryRun: false,                          // optional: mutating calls carry DryRun=true
//     launchTemplates: {                      // at least one platform
//       'linux/amd64': { id: 'lt-0abc...', version: '$Default', instanceType: 'c6id.xlarge' },
//       'linux/arm64': { name: 'slipway-arm64', version: '7' },
//     },
//     throttleMaxAttempts: 8,                 // optional, 1-20
//     throttleBaseDelayMs: 200,               // optional, 1-60000
//     throttleMaxDelayMs: 20000,              // optional, at least the base, up to 600000
//     describePageSize: 500,                  // optional, 5-1000 (EC2's MaxResults bounds)
//   }

export interface Ec2LaunchTemplateRef {
  /** Exactly one of id and name is set. */
  launchTemplateId: string | undefined;
  launchTemplateName: string | undefined;
  /** A version number, `$Default` or `$Latest`. */
  version: string;
  /** Overrides the template's instance type when set. */
  instanceType: string | undefined;
}

export interface Ec2FleetConfig {
  fleetName: string;
  region: string;
  endpoint: string | undefined;
  dryRun: boolean;
  launchTemplates: Partial<Record<Platform, Ec2LaunchTemplateRef>>;
  throttleMaxAttempts: number;
  throttleBaseDelayMs: number;
  throttleMaxDelayMs: number;
  describePageSize: number;
}

const TOP_LEVEL_KEYS = [
  'fleet',
  'region',
  'endpoint',
  'dryRun',
  'launchTemplates',
  'throttleMaxAttempts',
  'throttleBaseDelayMs',
  'throttleMaxDelayMs',
  'describePageSize',
] as const;
const TEMPLATE_KEYS = ['id', 'name', 'version', 'instanceType'] as const;

// The fleet name goes into DescribeInstances filter values, where * and ? are wildcards: a name
// holding them would match other fleets' instances. A conservative alphabet rules that out.
const FLEET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const TEMPLATE_ID = /^lt-[0-9a-f]{8,17}$/;
// EC2's own limits on launch template names.
const TEMPLATE_NAME = /^[A-Za-z0-9().\-/_]{3,128}$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;

/** Reads the settings into `problems` (each prefixed with `where`); the result is only meaningful when none were added. */
export function readEc2FleetConfig(input: unknown, problems: string[], where = 'ec2 fleet'): Ec2FleetConfig {
  const config: Ec2FleetConfig = {
    fleetName: '',
    region: '',
    endpoint: undefined,
    dryRun: false,
    launchTemplates: {},
    throttleMaxAttempts: 8,
    throttleBaseDelayMs: 200,
    throttleMaxDelayMs: 20_000,
    describePageSize: 500,
  };
  if (!isPlainObject(input)) {
    problems.push(`${where}: expected an object with fleet, region and launchTemplates; got ${describe(input)}`);
    return config;
  }
  for (const key of Object.keys(input)) {
    if (!(TOP_LEVEL_KEYS as readonly string[]).includes(key)) {
      problems.push(`${where}: unknown setting '${key}'; expected one of ${TOP_LEVEL_KEYS.join(', ')}`);
    }
  }

  const fleet = input['fleet'];
  if (typeof fleet !== 'string' || !FLEET_NAME.test(fleet)) {
    problems.push(`${where}.fleet must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit; got ${describe(fleet)}`);
  } else {
    config.fleetName = fleet;
  }

  const region = input['region'];
  if (typeof region !== 'string' || !REGION.test(region)) {
    problems.push(`${where}.region must be an AWS region such as us-east-1; got ${describe(region)}`);
  } else {
    config.region = region;
  }

  const endpoint = input['endpoint'];
  if (endpoint !== undefined && endpoint !== '') {
    if (typeof endpoint !== 'string' || !isHttpUrl(endpoint)) {
      problems.push(`${where}.endpoint must be an http:// or https:// URL; got ${describe(endpoint)}`);
    } else {
      config.endpoint = endpoint;
    }
  }

  config.dryRun = readBoolean(input['dryRun'], `${where}.dryRun`, false, problems);
  config.throttleMaxAttempts = readInteger(input['throttleMaxAttempts'], `${where}.throttleMaxAttempts`, 8, 1, 20, problems);
  config.throttleBaseDelayMs = readInteger(input['throttleBaseDelayMs'], `${where}.throttleBaseDelayMs`, 200, 1, 60_000, problems);
  config.throttleMaxDelayMs = readInteger(input['throttleMaxDelayMs'], `${where}.throttleMaxDelayMs`, 20_000, 1, 600_000, problems);
  if (config.throttleMaxDelayMs < config.throttleBaseDelayMs) {
    problems.push(
      `${where}.throttleMaxDelayMs (${config.throttleMaxDelayMs}) must be at least throttleBaseDelayMs (${config.throttleBaseDelayMs})`,
    );
  }
  config.describePageSize = readInteger(input['describePageSize'], `${where}.describePageSize`, 500, 5, 1000, problems);

  const templates = input['launchTemplates'];
  if (!isPlainObject(templates)) {
    problems.push(`${where}.launchTemplates must map ${Platforms.join(' and/or ')} to a launch template; got ${describe(templates)}`);
  } else {
    for (const [platform, raw] of Object.entries(templates)) {
      if (!(Platforms as readonly string[]).includes(platform)) {
        problems.push(`${where}.launchTemplates: unknown platform '${platform}'; expected ${Platforms.join(' or ')}`);
        continue;
      }
      const ref = readTemplate(raw, `${where}.launchTemplates['${platform}']`, problems);
      if (ref) config.launchTemplates[platform as Platform] = ref;
    }
    if (Object.keys(templates).length === 0) {
      problems.push(`${where}.launchTemplates must name a launch template for at least one of ${Platforms.join(', ')}`);
    }
  }
  return config;
}

/** Reads the settings or throws CONFIG_INVALID listing every problem. */
export function parseEc2FleetConfig(input: unknown): Ec2FleetConfig {
  const problems: string[] = [];
  const config = readEc2FleetConfig(input, problems);
  if (problems.length > 0) {
    throw new GatewayError('CONFIG_INVALID', `invalid ec2 fleet configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return config;
}

function readTemplate(raw: unknown, where: string, problems: string[]): Ec2LaunchTemplateRef | undefined {
  if (!isPlainObject(raw)) {
    problems.push(`${where} must be an object with id or name (and optionally version, instanceType); got ${describe(raw)}`);
    return undefined;
  }
  const before = problems.length;
  for (const key of Object.keys(raw)) {
    if (!(TEMPLATE_KEYS as readonly string[]).includes(key)) {
      problems.push(`${where}: unknown setting '${key}'; expected one of ${TEMPLATE_KEYS.join(', ')}`);
    }
  }
  const id = raw['id'];
  const name = raw['name'];
  if (id === undefined && name === undefined) problems.push(`${where} needs id or name`);
  if (id !== undefined && name !== undefined) problems.push(`${where} takes id or name, not both`);
  if (id !== undefined && (typeof id !== 'string' || !TEMPLATE_ID.test(id))) {
    problems.push(`${where}.id must be a launch template id like lt-0123456789abcdef0; got ${describe(id)}`);
  }
  if (name !== undefined && (typeof name !== 'string' || !TEMPLATE_NAME.test(name))) {
    problems.push(`${where}.name must be 3-128 letters, digits or ( ) . - / _; got ${describe(name)}`);
  }
  let version = '$Default';
  const rawVersion = raw['version'];
  if (rawVersion !== undefined) {
    const text = typeof rawVersion === 'number' ? String(rawVersion) : rawVersion;
    if (typeof text !== 'string' || !(text === '$Default' || text === '$Latest' || /^[1-9]\d{0,17}$/.test(text))) {
      problems.push(`${where}.version must be a version number, $Default or $Latest; got ${describe(rawVersion)}`);
    } else {
      version = text;
    }
  }
  const instanceType = raw['instanceType'];
  if (instanceType !== undefined && (typeof instanceType !== 'string' || !INSTANCE_TYPE.test(instanceType))) {
    problems.push(`${where}.instanceType must be an instance type like c6id.xlarge; got ${describe(instanceType)}`);
  }
  if (problems.length > before) return undefined;
  return {
    launchTemplateId: id as string | undefined,
    launchTemplateName: name as string | undefined,
    version,
    instanceType: instanceType as string | undefined,
  };
}

function readInteger(raw: unknown, name: string, fallback: number, min: number, max: number, problems: string[]): number {
  if (raw === undefined || raw === '') return fallback;
  const value = typeof raw === 'string' ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}; got ${describe(raw)}`);
    return fallback;
  }
  return value;
}

function readBoolean(raw: unknown, name: string, fallback: boolean, problems: string[]): boolean {
  if (raw === undefined || raw === '') return fallback;
  if (typeof raw === 'boolean') return raw;
  if (typeof raw === 'string') {
    if (['1', 'true', 'yes', 'on'].includes(raw.toLowerCase())) return true;
    if (['0', 'false', 'no', 'off'].includes(raw.toLowerCase())) return false;
  }
  problems.push(`${name} must be true or false; got ${describe(raw)}`);
  return fallback;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isHttpUrl(raw: string): boolean {
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}
