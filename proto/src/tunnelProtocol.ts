// Constants of the tunnel stream protocol spoken on both hops (CLI -> gateway, gateway -> agent).
// TUNNEL.md beside this package is the prose version; keep the two in step.

export const TUNNEL_PATH = '/v1/tunnel';
export const STREAM_END_CLEAN = 'clean';
export const AGENT_CONNECT_PATH = '/v1/agent/connect';
export const AGENT_STREAM_PATH = '/v1/streams';
export const AGENT_UPGRADE_PROTOCOL = 'slipway-agent/1';
// Replica to replica: a tunnel stream entered one replica and the builder's link is on another.
// Authenticated by a replica token; the client's own token travels along and is checked again.
export const REPLICA_FORWARD_PATH = '/v1/internal/streams';

export const Platforms = ['linux/amd64', 'linux/arm64'] as const;
export type Platform = (typeof Platforms)[number];
export function isPlatform(value: string): value is Platform {
  return (Platforms as readonly string[]).includes(value);
}

export const Header = {
  platform: 'slipway-platform',
  project: 'slipway-project',
  streamId: 'slipway-stream-id',
  // On a tunnel request (and the gateway's stream to the agent): the stream carries this BuildKit
  // session (sessionAttachment.ts) to dockerd's /session rather than BuildKit's API.
  session: 'slipway-session',
  agentId: 'slipway-agent-id',
  agentPlatform: 'slipway-agent-platform',
  agentVersion: 'slipway-agent-version',
  // On the 101 that accepts an agent link: which replica the agent reached (behind a TCP load
  // balancer, the agent learns it here and keeps links to distinct replicas). On a lane's upgrade
  // request: the replica whose link the lane is for.
  gatewayId: 'slipway-gateway-id',
  // On the same 101: the secret with which the agent opens lanes to this replica (laneFrames.ts);
  // on a lane's upgrade request: that secret, proving the lane comes from the linked agent.
  laneKey: 'slipway-lane-key',
  // On any answer of a replica that is shutting down: it still serves this request, but the
  // client should open its next ones on a new connection (another replica, through the load
  // balancer).
  draining: 'slipway-draining',
  // On an agent's connect request from EC2: its instance identity document (base64 of the exact
  // bytes IMDS served, which the signature covers) and AWS's base64 RSA-SHA256 signature of it.
  instanceDocument: 'slipway-instance-document',
  instanceSignature: 'slipway-instance-signature',
  // On a replica-to-replica forward: the client's Authorization, and the builder to reach.
  forwardedAuthorization: 'slipway-forwarded-authorization',
  builderId: 'slipway-builder-id',
  // Every tunnel response body ends with trailers: this one when the far side ended cleanly, the
  // two below when it failed. A body that ends with neither was cut off (a peer or link died).
  streamEnd: 'slipway-stream-end',
  // Trailers (or, before any data, response headers) that explain why a stream failed.
  errorCode: 'slipway-error',
  errorMessage: 'slipway-error-message',
} as const;

// Codes that cross the wire in `slipway-error` and in WebSocket close reasons. Each package maps
// its own error codes onto these at its edge.
export const WireErrorCodes = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'BAD_REQUEST',
  'HEADERS_TOO_LARGE',
  'UNKNOWN_PLATFORM',
  'NO_AGENT',
  'NO_CAPACITY',
  'AGENT_LOST',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_FAILED',
  'DRAINING',
  'NOT_FOUND',
  'CONFLICT',
  'BUILD_ENDED',
  'ROUTING_UNAVAILABLE',
  'RATE_LIMITED',
  // The builder cannot do what the stream asks of it (a session attachment to a buildkitd).
  'UNSUPPORTED',
  'INTERNAL',
] as const;
export type WireErrorCode = (typeof WireErrorCodes)[number];
export function isWireErrorCode(value: string): value is WireErrorCode {
  return (WireErrorCodes as readonly string[]).includes(value);
}

export const WireErrorHttpStatus: Record<WireErrorCode, number> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  BAD_REQUEST: 400,
  HEADERS_TOO_LARGE: 431,
  UNKNOWN_PLATFORM: 400,
  NO_AGENT: 503,
  NO_CAPACITY: 503,
  AGENT_LOST: 502,
  UPSTREAM_UNAVAILABLE: 502,
  UPSTREAM_FAILED: 502,
  DRAINING: 503,
  NOT_FOUND: 404,
  CONFLICT: 409,
  BUILD_ENDED: 410,
  ROUTING_UNAVAILABLE: 503,
  RATE_LIMITED: 429,
  UNSUPPORTED: 501,
  INTERNAL: 500,
};

// WebSocket close codes in the private range 4000-4999, one per wire code; 1000 is a clean end.
export const WsCloseCode: Record<WireErrorCode, number> = {
  UNAUTHENTICATED: 4401,
  FORBIDDEN: 4403,
  BAD_REQUEST: 4400,
  HEADERS_TOO_LARGE: 4431,
  UNKNOWN_PLATFORM: 4404,
  NO_AGENT: 4503,
  NO_CAPACITY: 4504,
  AGENT_LOST: 4502,
  UPSTREAM_UNAVAILABLE: 4505,
  UPSTREAM_FAILED: 4506,
  DRAINING: 4507,
  NOT_FOUND: 4408,
  CONFLICT: 4409,
  BUILD_ENDED: 4410,
  ROUTING_UNAVAILABLE: 4508,
  RATE_LIMITED: 4429,
  UNSUPPORTED: 4501,
  INTERNAL: 4500,
};
export function wireCodeForWsClose(code: number): WireErrorCode | undefined {
  for (const [wire, ws] of Object.entries(WsCloseCode)) if (ws === code) return wire as WireErrorCode;
  return undefined;
}

// Over WebSocket, a binary message carries bytes and an empty binary message is end-of-stream in
// the sender's direction (WebSocket has no half-close of its own).
export const WS_EOF = Buffer.alloc(0);

// Flow control. Node's HTTP/2 default is a 64 KiB window per stream and per session, which caps a
// stream at 64 KiB per round trip: 6 MB/s at 10 ms. An 8 MiB stream window fills a 100 ms path at
// 670 Mbit/s; the session window lets several such streams run at once. The session window also
// bounds what SocketDuplex may have to buffer, and everything buffered there is latency for the
// link's control traffic, so it is not made larger than it needs to be.
export const FlowControl = {
  streamWindowBytes: 8 * 1024 * 1024,
  sessionWindowBytes: 32 * 1024 * 1024,
  maxFrameSizeBytes: 64 * 1024,
  maxConcurrentStreams: 4096,
  // nghttp2 accounts memory for buffered frames per session; the windows above need headroom.
  maxSessionMemoryMiB: 512,
  maxHeaderListBytes: 16 * 1024,
} as const;

export function http2Settings(): { initialWindowSize: number; maxFrameSize: number; maxConcurrentStreams: number; maxHeaderListSize: number; enablePush: boolean } {
  return {
    initialWindowSize: FlowControl.streamWindowBytes,
    maxFrameSize: FlowControl.maxFrameSizeBytes,
    maxConcurrentStreams: FlowControl.maxConcurrentStreams,
    maxHeaderListSize: FlowControl.maxHeaderListBytes,
    enablePush: false,
  };
}
