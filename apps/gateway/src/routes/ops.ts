import { Router } from 'express';
import type { Redis } from 'ioredis';
import type { GatewayMetrics } from '../metrics.js';
import { versionKey, workersHolding, type FleetView } from '@infer/fleet';
import type { ModelVersion } from '@infer/models';

export interface OpsDeps {
  redis: Redis;
  /**
   * Every Redis connection the gateway serves with (commands, envelopes, BullMQ, subscriber). Each
   * reconnects on its own schedule after an outage: the gateway is ready only once all of them are,
   * or a submit that follows a 200 could still meet a connection that is not back yet.
   */
  connections: Redis[];
  metrics: GatewayMetrics;
  openapi: () => unknown;
  /** The gateway's model catalog: its versions, and which of them are draining (they take no new job). */
  models: { all(): ModelVersion[]; view: { isDraining(model: string, version: string): boolean } };
  fleet: FleetView;
}

/** Per model and version: live workers that have it loaded (ready, or draining what is queued for it). */
type ModelsReadiness = Record<string, Record<string, { ready: boolean; workers_ready: number }>>;

/**
 * Each model version this gateway knows, and whether it takes jobs. A
 * version is `ready` when a live worker has it loaded, or when no worker is
 * live at all (jobs then queue for the fleet's return); never while it is
 * draining (unloaded or removed: a job for it is refused), though its
 * `workers_ready` still counts the workers finishing its queue. A version a
 * worker is still loading is not ready here, though the check before
 * queueing (FleetView.served, see jobs/served.ts) takes jobs for it: they
 * wait the moments that takes.
 */
async function modelsReadiness(deps: OpsDeps): Promise<ModelsReadiness> {
  const [live, versions] = [await deps.fleet.live(), await deps.fleet.versions()];
  // Without a prototype: a model may be named `constructor` or `toString` (names are
  // user-chosen), which an object literal already has, inherited.
  const out: ModelsReadiness = Object.create(null) as ModelsReadiness;
  for (const m of deps.models.all()) {
    const n = workersHolding(versions.get(versionKey(m.name, m.version)));
    const ready = !deps.models.view.isDraining(m.name, m.version) && (live.length === 0 || n > 0);
    (out[m.name] ??= Object.create(null) as ModelsReadiness[string])[m.version] = { ready, workers_ready: n };
  }
  return out;
}

/** Operational routes; no API key, as orchestrators and scrapers call them. */
export function opsRoutes(deps: OpsDeps): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const ok = deps.connections.every((conn) => conn.status === 'ready') && await Promise.race([
      deps.redis.ping().then(
        (pong) => pong === 'PONG',
        () => false,
      ),
      new Promise<boolean>((resolve) => setTimeout(resolve, 1000, false).unref()),
    ]);
    if (!ok) {
      res.set('Retry-After', '2');
      res.status(503).json({ status: 'unavailable', redis: 'unreachable' });
      return;
    }
    // The gateway is ready once Redis answers; the models say which versions workers serve.
    const models = await modelsReadiness(deps).catch(() => undefined);
    res.status(200).json({ status: 'ready', redis: 'ok', ...(models ? { models } : {}) });
  });
  // With metrics off (createGateway's `metrics: false`) there is no /metrics: a 404, not an empty scrape that looks healthy.
  if (deps.metrics.enabled) {
    router.get('/metrics', async (_req, res) => {
      res.type(deps.metrics.contentType).send(await deps.metrics.scrape());
    });
  }
  router.get('/openapi.json', (_req, res) => {
    res.json(deps.openapi());
  });
  return router;
}
