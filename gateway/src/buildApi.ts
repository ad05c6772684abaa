import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { WireErrorHttpStatus, type Logger } from '@slipway/proto';
import { GatewayError, toGatewayError, wireCodeOf } from './gatewayError.js';
import type { Authenticator, ClientIdentity } from './authenticator.js';
import type { BuildService } from './buildService.js';
import type { GatewayMetrics } from './metrics.js';
import { BUILD_ID_PATTERN } from './tokenClaims.js';
import type { AbuseGuard } from './abuseGuard.js';

export interface BuildApiOptions {
  builds: BuildService;
  auth: Authenticator;
  parseBearer: (header: string | undefined) => string;
  metrics: GatewayMetrics;
  log: Logger;
  guard: AbuseGuard;
}

type IdParams = { Params: { id: string } };

// JSON over HTTPS on the gateway's one port (HTTP/2 or HTTP/1.1):
//   POST /v1/builds                 {platforms}     project token -> build id + build token
//   POST /v1/builds/:id/acquire     {platform}      build token   -> active | pending (+ retryAfterMs) | ended
//   POST /v1/builds/:id/heartbeat                   build token   -> allocation states (+ a renewed token)
//   POST /v1/builds/:id/finish                      build token
//   POST /v1/builds/:id/cancel      {reason?}       build token
//   GET  /v1/builds/:id                             build token
// Errors are {"error":{"code","message"}} with the wire code's HTTP status.
export function registerBuildApi(app: FastifyInstance, options: BuildApiOptions): void {
  const { builds } = options;
  const identify = async (req: FastifyRequest, requiredScope: string | null = 'build'): Promise<ClientIdentity> => {
    try {
      return await options.guard.authenticate(
        { path: 'builds', source: req.socket.remoteAddress, transport: 'https' },
        () => options.auth.verifyClient(options.parseBearer(req.headers.authorization), requiredScope),
        (id) => ({ subject: id.subject, project: id.project, tokenId: id.tokenId }),
      );
    } catch (err) {
      const error = toGatewayError(err);
      options.metrics.authFailures.inc({ path: 'builds', transport: 'https', code: wireCodeOf(error.code) });
      throw error;
    }
  };
  const buildId = (req: FastifyRequest<IdParams>): string => {
    const id = req.params.id;
    if (!BUILD_ID_PATTERN.test(id)) throw new GatewayError('NOT_FOUND', `'${id.slice(0, 64)}' is not a build id`);
    return id;
  };
  const body = (req: FastifyRequest): Record<string, unknown> => {
    const b = req.body;
    if (b === undefined || b === null || b === '') return {};
    if (typeof b !== 'object' || Array.isArray(b)) throw new GatewayError('BAD_REQUEST', 'request body must be a JSON object');
    return b as Record<string, unknown>;
  };

  app.setErrorHandler(async (err: unknown, _req, reply: FastifyReply) => {
    // fastify's own errors (bad JSON, body too large) carry a statusCode: keep it and say why.
    const fastifyStatus = (err as { statusCode?: number }).statusCode;
    const error =
      err instanceof GatewayError
        ? err
        : fastifyStatus !== undefined && fastifyStatus < 500
          ? new GatewayError('BAD_REQUEST', (err as Error).message)
          : toGatewayError(err);
    const code = wireCodeOf(error.code);
    if (code === 'RATE_LIMITED') void reply.header('retry-after', '1');
    if (code === 'INTERNAL') options.log.error('build API failed', { reason: error.message });
    return reply.code(WireErrorHttpStatus[code]).send({ error: { code, message: error.message } });
  });

  app.post('/v1/builds', async (req, reply) => {
    const identity = await identify(req);
    return reply.code(201).send(await builds.create(identity, body(req)['platforms']));
  });
  app.post<IdParams>('/v1/builds/:id/acquire', async (req) => builds.acquire(await identify(req), buildId(req), body(req)['platform']));
  app.post<IdParams>('/v1/builds/:id/heartbeat', async (req) => builds.heartbeat(await identify(req), buildId(req)));
  app.post<IdParams>('/v1/builds/:id/finish', async (req) => builds.end(await identify(req), buildId(req), 'finished', 'finished by the client'));
  app.post<IdParams>('/v1/builds/:id/cancel', async (req) => {
    const reason = body(req)['reason'];
    const why = typeof reason === 'string' && reason !== '' ? `cancelled: ${reason.slice(0, 200)}` : 'cancelled by the client';
    return builds.end(await identify(req), buildId(req), 'cancelled', why);
  });
  // Reading a build's state also works with a project token of its project that has the `read` scope.
  app.get<IdParams>('/v1/builds/:id', async (req) => builds.get(await identify(req, null), buildId(req)));
}
