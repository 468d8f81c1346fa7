import { Router } from 'express';
import type { Redis } from 'ioredis';
import type { GatewayMetrics } from '../metrics.js';

export interface OpsDeps {
  redis: Redis;
  metrics: GatewayMetrics;
  openapi: () => unknown;
}

/** Operational routes; no API key, as orchestrators and scrapers call them. */
export function opsRoutes(deps: OpsDeps): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const ok = await Promise.race([
      deps.redis.ping().then(
        (pong) => pong === 'PONG',
        () => false,
      ),
      new Promise<boolean>((resolve) => setTimeout(resolve, 1000, false).unref()),
    ]);
    if (!ok) res.set('Retry-After', '2');
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable', redis: ok ? 'ok' : 'unreachable' });
  });
  router.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  router.get('/openapi.json', (_req, res) => {
    res.json(deps.openapi());
  });
  return router;
}
