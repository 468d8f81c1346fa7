import express, { type Express } from 'express';
import type { Redis } from 'ioredis';
import type { Config } from '@infer/config';
import type { JobStore, JobWaiters } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import type { ModelRepository } from '@infer/models';
import { requireApiKey } from './http/auth.js';
import { notFoundRoute, problemMiddleware } from './http/problem-middleware.js';
import { rateLimitPerKey } from './http/rate-limit.js';
import { JobService } from './jobs/job-service.js';
import type { QueueRegistry } from './jobs/queue-registry.js';
import { GatewayMetrics } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import { jobRoutes } from './routes/jobs.js';
import { modelRoutes } from './routes/models.js';
import { opsRoutes } from './routes/ops.js';

export interface GatewayDeps {
  config: Config;
  logger: Logger;
  /** Commands (not subscriptions); `enableOfflineQueue: false` so an outage fails fast as 503. */
  redis: Redis;
  models: ModelRepository;
  store: JobStore;
  waiters: JobWaiters;
  queues: QueueRegistry;
  metrics?: GatewayMetrics;
}

/** Build the gateway's Express app. Listening and signals are main.ts's business. */
export function createApp(deps: GatewayDeps): Express {
  const { config, logger } = deps;
  const metrics = deps.metrics ?? new GatewayMetrics();
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(metrics.middleware());
  let openapi: unknown;
  app.use(opsRoutes({ redis: deps.redis, metrics, openapi: () => (openapi ??= buildOpenApi()) }));

  const v1 = express.Router();
  v1.use(requireApiKey(config.apiKeys));
  v1.use(rateLimitPerKey(deps.redis, config.queuePrefix, config.rateLimitPerSecond));
  v1.use('/models', modelRoutes(deps.models));
  const jobs = new JobService({
    models: deps.models,
    store: deps.store,
    waiters: deps.waiters,
    queues: deps.queues,
    webhookAllowPrivate: config.webhookAllowPrivate,
  });
  v1.use('/jobs', jobRoutes(jobs, metrics, { maxBodyBytes: config.maxBodyBytes, maxWaitMs: config.maxWaitMs }));
  app.use('/v1', v1);

  app.use(notFoundRoute);
  app.use(problemMiddleware(logger, config.maxBodyBytes));
  return app;
}
