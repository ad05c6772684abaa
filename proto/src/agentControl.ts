import { loadSync, type PackageDefinition, type MethodDefinition } from '@grpc/proto-loader';
import { PROTO_ROOT, AGENT_CONTROL_PROTO } from './protoFiles.js';

export const AGENT_CONTROL_SERVICE = 'slipway.agent.v1.AgentControl';

export interface DescribeRequest { gatewayId: string }
export interface AgentDescription {
  agentId: string;
  platform: string;
  maxStreams: number;
  upstreamKind: string;
  version: string;
  labels: Record<string, string>;
  maxBuilds: number;
  instanceId: string;
}
export interface Ping { seq: number; sentUnixMs: number }
export interface Pong { seq: number; activeStreams: number; draining: boolean }

let cached: PackageDefinition | undefined;

// keepCase false gives camelCase fields; longs as numbers keep the code free of Long objects, and
// sequence numbers and timestamps stay far below 2^53.
export function agentControlPackage(): PackageDefinition {
  cached ??= loadSync(AGENT_CONTROL_PROTO, {
    includeDirs: [PROTO_ROOT],
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return cached;
}

export interface AgentControlMethods {
  describe: MethodDefinition<DescribeRequest, AgentDescription>;
  heartbeat: MethodDefinition<Ping, Pong>;
}

export function agentControlMethods(): AgentControlMethods {
  const service = agentControlPackage()[AGENT_CONTROL_SERVICE] as unknown as Record<string, MethodDefinition<object, object>>;
  return {
    describe: service['Describe'] as unknown as MethodDefinition<DescribeRequest, AgentDescription>,
    heartbeat: service['Heartbeat'] as unknown as MethodDefinition<Ping, Pong>,
  };
}
