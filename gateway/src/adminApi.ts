import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { JWK } from 'jose';
import { GatewayError, toGatewayError, wireCodeOf } from './gatewayError.js';
import type { GatewayMetrics } from './metrics.js';
import type { ProjectAdmin } from './projectAdmin.js';
import type { AbuseGuard } from './abuseGuard.js';
import type { OidcExchange } from './oidcExchange.js';

export interface AdminApiOptions {
  admin: ProjectAdmin;
  verifyAdmin: (token: string) => Promise<{ subject: string }>;
  parseBearer: (header: string | undefined) => string;
  /** Public halves of the keys this gateway signs with (published at /.well-known/jwks.json). */
  publicKeys: () => JWK[];
  metrics: GatewayMetrics;
  guard: AbuseGuard;
  /** The CI OIDC exchange, when this gateway trusts CI identities. */
  oidc?: OidcExchange;
}

type Name = { Params: { name: string } };

// The admin API (admin tokens, audience `slipway-admin`), and the gateway's public keys:
//   GET    /.well-known/jwks.json
//   POST   /v1/oidc/exchange                       {project, token} (a CI OIDC token) -> a short-lived project token
//   POST   /v1/admin/projects                      {name, isolateUntrusted?}
//   GET    /v1/admin/projects
//   DELETE /v1/admin/projects/:name                revokes its tokens, drops its trust policies
//   POST   /v1/admin/projects/:name/tokens         {scopes?, ttlSec?, description?} -> {id, token, ...}
//   GET    /v1/admin/projects/:name/tokens
//   DELETE /v1/admin/tokens/:id                    revoke
//   POST   /v1/admin/projects/:name/trust          trust policy
//   GET    /v1/admin/projects/:name/trust
//   DELETE /v1/admin/projects/:name/trust/:id
// Errors come from the build API's error handler (same shape, same status mapping).
export function registerAdminApi(app: FastifyInstance, options: AdminApiOptions): void {
  const { admin } = options;
  const who = async (req: FastifyRequest): Promise<string> => {
    try {
      const admin = await options.guard.authenticate(
        { path: 'admin', source: req.socket.remoteAddress, transport: 'https' },
        () => options.verifyAdmin(options.parseBearer(req.headers.authorization)),
        (a) => ({ subject: a.subject }),
      );
      return admin.subject;
    } catch (err) {
      options.metrics.authFailures.inc({ path: 'admin', transport: 'https', code: wireCodeOf(toGatewayError(err).code) });
      throw err;
    }
  };

  app.get('/.well-known/jwks.json', async (_req, reply) => reply.header('cache-control', 'public, max-age=300').send({ keys: options.publicKeys() }));

  // A CI job's OIDC token for a short-lived project token; the CI token is the credential.
  app.post('/v1/oidc/exchange', async (req, reply) => {
    const oidc = options.oidc;
    if (!oidc) throw new GatewayError('NOT_FOUND', 'this gateway does not exchange CI identities');
    const exchanged = await options.guard.authenticate(
      { path: 'oidc', source: req.socket.remoteAddress, transport: 'https' },
      () => oidc.exchange(req.body),
      (x) => ({ subject: x.subject, project: x.project }),
    );
    const { subject: _subject, policyId: _policyId, ...answer } = exchanged;
    return reply.code(201).send(answer);
  });

  app.post('/v1/admin/projects', async (req, reply) => {
    await who(req);
    return reply.code(201).send(await admin.createProject(req.body));
  });
  app.get('/v1/admin/projects', async (req) => {
    await who(req);
    return { projects: await admin.listProjects() };
  });
  app.delete<Name>('/v1/admin/projects/:name', async (req, reply) => {
    await who(req);
    await admin.deleteProject(req.params.name);
    return reply.code(204).send();
  });
  app.post<Name>('/v1/admin/projects/:name/tokens', async (req, reply) => {
    const subject = await who(req);
    return reply.code(201).send(await admin.createToken(req.params.name, req.body, subject));
  });
  app.get<Name>('/v1/admin/projects/:name/tokens', async (req) => {
    await who(req);
    return { tokens: await admin.listTokens(req.params.name) };
  });
  app.delete<{ Params: { id: string } }>('/v1/admin/tokens/:id', async (req, reply) => {
    const subject = await who(req);
    await admin.revokeToken(req.params.id, subject);
    return reply.code(204).send();
  });
  app.post<Name>('/v1/admin/projects/:name/trust', async (req, reply) => {
    await who(req);
    return reply.code(201).send(await admin.addTrustPolicy(req.params.name, req.body));
  });
  app.get<Name>('/v1/admin/projects/:name/trust', async (req) => {
    await who(req);
    return { policies: await admin.listTrustPolicies(req.params.name) };
  });
  app.delete<{ Params: { name: string; id: string } }>('/v1/admin/projects/:name/trust/:id', async (req, reply) => {
    await who(req);
    await admin.removeTrustPolicy(req.params.name, req.params.id);
    return reply.code(204).send();
  });
}
