import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Header, Platforms, formatSessionAttachment, isPlatform, parseSessionAttachment, type Logger, type Platform } from '@slipway/proto';
import { GatewayError, toGatewayError, wireCodeOf } from './gatewayError.js';
import type { Authenticator, ClientIdentity } from './authenticator.js';
import type { AgentPool } from './agentPool.js';
import type { GatewayMetrics } from './metrics.js';
import type { BuildService } from './buildService.js';
import { splice, type ClientEnd, type SpliceResult, type StreamTarget } from './tunnelSplice.js';
import type { StreamRequest } from './agentLink.js';
import type { AbuseGuard } from './abuseGuard.js';

/** Finds a stream target for a builder whose link this replica does not hold (replica forwarding). */
export type RemoteRoute = (agentId: string, request: TunnelRequest) => Promise<StreamTarget | undefined>;

export interface TunnelRequest {
  identity: ClientIdentity;
  platform: Platform;
  streamId: string;
  /** The build whose builder the stream goes to (from the build token). */
  buildId: string;
  /** The client's Authorization header, passed along when the stream is forwarded to another replica. */
  authorization: string;
  /** The BuildKit session the stream attaches instead of reaching BuildKit's API (validated JSON). */
  session?: string;
}

function single(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

// Authenticates tunnel requests and joins each accepted one to a stream on an agent. The
// transports (HTTP/2 stream, WebSocket) differ only in their ClientEnd.
export class TunnelService {
  private readonly active = new Map<Platform, number>(Platforms.map((p) => [p, 0]));

  constructor(
    private readonly auth: Authenticator,
    private readonly pool: AgentPool,
    private readonly builds: BuildService,
    private readonly remote: RemoteRoute,
    private readonly metrics: GatewayMetrics,
    private readonly log: Logger,
    private readonly parseBearer: (header: string | undefined) => string,
    private readonly guard: AbuseGuard,
  ) {}

  activeByPlatform(): Array<[{ platform: string }, number]> {
    return [...this.active].map(([platform, n]) => [{ platform }, n]);
  }

  // Every tunnel request is an authentication attempt from its address (rate limited and audited
  // whatever its outcome), and an accepted one is a stream open charged to its token.
  async authorize(headers: IncomingHttpHeaders, transport: string, source: string | undefined): Promise<TunnelRequest> {
    // A forwarded stream was charged where it entered; here its source is only the other replica.
    const forwarded = transport === 'forward';
    const context = { path: forwarded ? ('forward' as const) : ('tunnel' as const), source, transport };
    try {
      const request = await this.guard.authenticate(
        context,
        () => this.check(headers),
        ({ identity }) => ({ subject: identity.subject, project: identity.project, tokenId: identity.tokenId }),
        { charge: !forwarded },
      );
      if (!forwarded) this.guard.openStream(request.identity, context);
      return request;
    } catch (err) {
      const error = toGatewayError(err);
      this.metrics.authFailures.inc({ path: 'tunnel', transport, code: wireCodeOf(error.code) });
      throw error;
    }
  }

  private async check(headers: IncomingHttpHeaders): Promise<TunnelRequest> {
    {
      const authorization = single(headers, 'authorization') ?? '';
      const token = this.parseBearer(authorization);
      const identity = await this.auth.verifyClient(token);
      const platform = single(headers, Header.platform);
      if (platform === undefined || platform === '') {
        throw new GatewayError('BAD_REQUEST', `header ${Header.platform} is required; expected one of ${Platforms.join(', ')}`);
      }
      if (!isPlatform(platform)) {
        throw new GatewayError('UNKNOWN_PLATFORM', `platform '${platform.slice(0, 64)}' is not served; expected one of ${Platforms.join(', ')}`);
      }
      const project = single(headers, Header.project);
      if (project !== undefined && project !== identity.project) {
        throw new GatewayError('FORBIDDEN', `token is for project '${identity.project}' but the request names project '${project.slice(0, 64)}'`);
      }
      const { buildId } = identity;
      if (buildId === undefined) {
        throw new GatewayError(
          'FORBIDDEN',
          `tunnels need a build token; this is a project token for '${identity.project}'. Create a build (POST /v1/builds) and acquire a builder first`,
        );
      }
      const sessionHeader = single(headers, Header.session);
      let session: string | undefined;
      if (sessionHeader !== undefined) {
        try {
          session = formatSessionAttachment(parseSessionAttachment(sessionHeader));
        } catch (err) {
          throw new GatewayError('BAD_REQUEST', `header ${Header.session}: ${(err as Error).message}`);
        }
      }
      return { identity, platform, buildId, authorization, session, streamId: single(headers, Header.streamId)?.slice(0, 64) || randomUUID() };
    }
  }

  // Finds the builder acquired for the request's build: the link here, or a forward to the
  // replica holding it. Throws (NO_CAPACITY, AGENT_LOST, BUILD_ENDED, ...) before the client is
  // told anything, so callers can still refuse the stream or the WebSocket upgrade.
  async route(request: TunnelRequest, options: { localOnly?: boolean } = {}): Promise<StreamTarget> {
    const { agentId } = await this.builds.builderFor(request.identity, request.platform);
    // A forwarded stream must end here: forwarding it again could loop between replicas.
    const target: StreamTarget | undefined = this.pool.get(agentId) ?? (options.localOnly ? undefined : await this.remote(agentId, request));
    if (target === undefined) {
      throw new GatewayError(
        'AGENT_LOST',
        options.localOnly
          ? `builder ${agentId} of build ${request.buildId} is no longer connected to this replica`
          : `builder ${agentId} of build ${request.buildId} is not connected to any gateway replica`,
      );
    }
    if (!target.hasCapacity()) {
      throw new GatewayError('NO_CAPACITY', `builder ${agentId} is at its stream limit or shutting down`);
    }
    return target;
  }

  async run(client: ClientEnd, request: TunnelRequest, link: StreamTarget, transport: string, source: string | undefined): Promise<void> {
    // Streams open at once per token: held for the stream's whole life, where the stream entered.
    const release = transport === 'forward' ? () => {} : this.guard.holdStream(request.identity, { path: 'tunnel', source, transport });
    try {
      await this.carry(client, request, link, transport);
    } finally {
      release();
    }
  }

  private async carry(client: ClientEnd, request: TunnelRequest, link: StreamTarget, transport: string): Promise<void> {
    const streamRequest: StreamRequest = { streamId: request.streamId, project: request.identity.project, platform: request.platform };
    if (request.session !== undefined) streamRequest.session = request.session;
    const onLane = link.carryOnLane?.(client, streamRequest);
    const carrying = onLane ?? this.spliceOnLink(client, streamRequest, link);
    this.metrics.streamsOpened.inc({ transport, platform: request.platform });
    this.metrics.streamsByPath.inc({ path: onLane ? 'lane' : 'link' });
    this.metrics.streamsByKind.inc({ kind: request.session === undefined ? 'api' : 'session' });
    this.active.set(request.platform, (this.active.get(request.platform) ?? 0) + 1);
    const result = await carrying;
    this.active.set(request.platform, (this.active.get(request.platform) ?? 1) - 1);
    this.metrics.bytes.inc({ direction: 'up' }, result.bytesUp);
    this.metrics.bytes.inc({ direction: 'down' }, result.bytesDown);
    if (result.error) {
      this.metrics.streamsFailed.inc({ transport, code: wireCodeOf(result.error.code) });
      this.log.info('tunnel stream failed', {
        streamId: request.streamId,
        project: request.identity.project,
        agentId: link.agentId,
        code: result.error.code,
        reason: result.error.message,
      });
    }
  }

  private spliceOnLink(client: ClientEnd, streamRequest: StreamRequest, link: StreamTarget): Promise<SpliceResult> {
    const agentStream = link.openStream(streamRequest);
    // The stream's own error listener comes from splice(); this one covers the gap until then.
    agentStream.on('error', () => {});
    return splice(client, agentStream, link);
  }
}
