import Fastify, { type FastifyInstance } from 'fastify';
import type tls from 'node:tls';
import { Header } from '@slipway/proto';
import type { MetricsRegistry } from './metrics.js';

export interface HttpApiOptions {
  serverFactory: (handler: (req: never, res: never) => void) => tls.Server;
  metrics: MetricsRegistry;
  isReady: () => { ready: boolean; reason: string };
  /** While true, every answer says so (slipway-draining), so clients move to another replica. */
  isDraining?: () => boolean;
  maxHeaderBytes: number;
  /** Adds the routes that need the gateway's services (the build lifecycle). */
  register?: (app: FastifyInstance) => void;
}

// The plain HTTP API on the gateway's one port. Tunnels and agent links never reach fastify:
// gateway.ts takes them off the server before fastify's handler sees them.
export function createHttpApi(options: HttpApiOptions): FastifyInstance {
  const app = Fastify({
    http2: true,
    https: { allowHTTP1: true },
    serverFactory: options.serverFactory as never,
    logger: false,
    bodyLimit: 64 * 1024,
  } as never) as unknown as FastifyInstance;
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const { ready, reason } = options.isReady();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', reason });
  });
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4').send(options.metrics.render()));
  app.addHook('onSend', async (_req, reply) => {
    if (options.isDraining?.()) void reply.header(Header.draining, '1');
  });
  options.register?.(app);
  app.setNotFoundHandler(async (req, reply) =>
    reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no route for ${req.method} ${req.url.slice(0, 200)}` } }),
  );
  return app;
}
