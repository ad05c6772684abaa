import * as grpc from '@grpc/grpc-js';
import { AGENT_CONTROL_SERVICE, agentControlPackage, type AgentDescription, type Ping, type Pong, type DescribeRequest } from '@slipway/proto';

export interface AgentStatus {
  describe(): AgentDescription;
  activeStreams(): number;
  draining(): boolean;
}

// The agent's control plane, a real grpc-js server. It listens nowhere: connections reach it
// through a connection injector (see grpcBridge.ts).
export function createControlServer(status: AgentStatus): grpc.Server {
  const server = new grpc.Server({ 'grpc.max_concurrent_streams': 64 });
  const service = agentControlPackage()[AGENT_CONTROL_SERVICE] as grpc.ServiceDefinition;
  server.addService(service, {
    Describe(_call: grpc.ServerUnaryCall<DescribeRequest, AgentDescription>, callback: grpc.sendUnaryData<AgentDescription>) {
      callback(null, status.describe());
    },
    Heartbeat(call: grpc.ServerDuplexStream<Ping, Pong>) {
      // Liveness is judged per link from HTTP/2 PING frames (gatewayLink.ts): this one server
      // answers every link, so a Ping here cannot say which link is alive.
      call.on('data', (ping: Ping) => {
        call.write({ seq: ping.seq, activeStreams: status.activeStreams(), draining: status.draining() });
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  });
  return server;
}
