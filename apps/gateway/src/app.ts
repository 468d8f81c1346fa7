import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Express, type Request } from 'express';
import type { Redis } from 'ioredis';
import { UNENDED_BATCH_TTL_MS, type BatchStore } from '@infer/batch-store';
import { REQUEST_TIME_LIMIT_MS } from '@infer/contract';
import type { Config } from '@infer/config';
import type { JobStore, JobWaiters } from '@infer/job-store';
import { throttledWarn, type Logger } from '@infer/logger';
import type { ModelRepository } from '@infer/models';
import type { ModelControl } from '@infer/model-control';
import type { ModelCatalog } from './models/model-catalog.js';
import { WebhookSecrets, type WebhookEvents } from '@infer/webhooks';
import { BatchService } from './batches/batch-service.js';
import { OpenBatches } from './batches/open-batches.js';
import { RedisMemory } from './batches/redis-memory.js';
import type { ParseThread } from './batches/parse-thread/parse-thread.js';
import type { BulkQueues } from './batches/bulk-queues.js';
import { InteractiveRequests } from './batches/interactive-requests.js';
import { authenticate, requireApiKey } from './http/auth.js';
import { adminKeyName, requireAdminKey } from './http/admin-auth.js';
import { traceExpressRequests } from './http/request-tracing.js';
import type { Tracing } from '@infer/tracing';
import { QUEUE_DASHBOARD_PATH, type QueueDashboard } from './admin/queue-dashboard.js';
import { notFoundRoute, problemMiddleware } from './http/problem-middleware.js';
import { isDocumentedRoute } from './http/documented-routes.js';
import { rateLimitPerKey, SharedRateLimiter } from './http/rate-limit.js';
import { JobService } from './jobs/job-service.js';
import type { EnvelopeWriter } from './jobs/envelope-writer.js';
import { CompletedEventsOutbox } from '@infer/job-store';
import type { FleetView } from '@infer/fleet';
import { GatewayMetrics } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import { batchRoutes } from './routes/batches.js';
import { JobHandlers, jobDispatch, mountJobRoutes } from './routes/jobs.js';
import { modelRoutes } from './routes/models.js';
import { modelAdminRoutes } from './routes/model-admin.js';
import { opsRoutes } from './routes/ops.js';
import { webhookRoutes } from './routes/webhooks.js';
import { DeadlineSweep } from './jobs/deadline-sweep.js';

export interface GatewayDeps {
  config: Config;
  logger: Logger;
  /** Commands (not subscriptions); `enableOfflineQueue: false` so an outage fails fast as 503. */
  redis: Redis;
  /** All of the gateway's Redis connections, `redis` among them: `/readyz` is 200 only while every one is up. Absent: `redis` alone. */
  connections?: Redis[];
  /** The live model catalog: versions, their states and the routing of unpinned jobs. */
  models: ModelCatalog;
  /** The repository the catalog watches (the admin load route looks in its folder). */
  repository: ModelRepository;
  /** The models' shared state: routing, draining, rollouts, events. */
  control: ModelControl;
  store: JobStore;
  waiters: JobWaiters;
  /** Writes accepted jobs to the queues, as envelopes. */
  writer: EnvelopeWriter;
  /** The live workers and what they serve (readiness per model version). */
  fleet: FleetView;
  batchStore: BatchStore;
  bulkQueues: BulkQueues;
  /** Webhook events the gateway sends (a canceled job's job.completed) and resends. */
  webhookEvents: WebhookEvents;
  /** Reads NDJSON batch uploads off the event loop; absent, they are read on it. */
  parseThread?: ParseThread;
  metrics?: GatewayMetrics;
  /** The operators' queue dashboard (bull-board), served at /admin/queues behind an admin key. */
  dashboard?: QueueDashboard;
  /** How long an NDJSON batch upload may take to arrive whole. @default REQUEST_TIME_LIMIT_MS (5 min; tests: shorter) */
  uploadTimeLimitMs?: number;
  /** OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT, or a test's provider); absent or off: nothing is traced. */
  tracing?: Tracing;
}

export interface GatewayApp {
  app: Express;
  /** The server's request listener: the job routes' own dispatch first, then the Express app. */
  listener: (req: IncomingMessage, res: ServerResponse) => void;
  /**
   * For a request that asks `Expect: 100-continue`: whether to let its body come. A request under `/v1`
   * without a key the gateway knows (an API key, or an admin key) will only be answered 401, so its
   * client is spared sending a body of megabytes first; anything else is asked for its body.
   */
  continueBody: (req: IncomingMessage) => boolean;
  /** For the caller to close before Redis. */
  rateLimiter: SharedRateLimiter;
  /** For the caller to start once the catalog has, and to close before Redis. */
  deadlineSweep: DeadlineSweep;
}

/** Build the gateway's Express app and request listener. Listening and signals are main.ts's business. */
export function createApp(deps: GatewayDeps): GatewayApp {
  const { config, logger } = deps;
  const metrics = deps.metrics ?? new GatewayMetrics();
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  if (deps.tracing?.enabled) app.use(traceExpressRequests(deps.tracing));
  if (metrics.enabled) app.use(metrics.middleware());

  const rateLimiter = new SharedRateLimiter({
    redis: deps.redis,
    prefix: config.queuePrefix,
    perSecond: config.rateLimitPerSecond,
    // Fails every sync (50 ms) while Redis is away: one line in 10 s tells as much.
    onError: throttledWarn(logger, 'rate limit sync failed; each gateway limits alone meanwhile'),
  });
  const guard = [requireApiKey(config.apiKeyDigests), rateLimitPerKey(rateLimiter, config.rateLimitPerSecond)];

  // Express's routers answer OPTIONS by themselves (200 with Allow) for any path they route, ahead of the
  // routes' own key checks. The gateway serves no OPTIONS (no CORS): it is what any unserved method is.
  // Under /v1: the key check (an admin key counts), then 404; the operations routes take no key: 404; the
  // dashboard keeps its own challenge.
  const isAdmin = (req: Request) => adminKeyName({ admins: config.adminKeyDigests }, req) !== undefined;
  const keyCheck = express.Router();
  keyCheck.use((req, _res, next) => next(isAdmin(req) ? 'router' : undefined), ...guard);
  const unservedOptions = express.Router();
  unservedOptions.use((req, _res, next) => next(req.method === 'OPTIONS' && !req.path.startsWith(QUEUE_DASHBOARD_PATH) ? undefined : 'router'));
  unservedOptions.use('/v1', keyCheck);
  unservedOptions.use(notFoundRoute);
  app.use(unservedOptions);
  const jobs = new JobService({
    models: deps.models,
    store: deps.store,
    waiters: deps.waiters,
    writer: deps.writer,
    fleet: deps.fleet,
    webhookAllowPrivate: config.webhookAllowPrivate,
    resultTtlMs: config.resultTtlMs,
    outbox: new CompletedEventsOutbox(deps.redis, config.queuePrefix, deps.webhookEvents, logger),
    onSubmitted: (model, version) => metrics.jobSubmitted(model, version),
    onCanceled: (model, version) => metrics.jobCanceled(model, version),
    // The workers count the deadlines they end towards a running rollout; a job read past its deadline
    // ends here instead (there may be no worker at all), and counts the same.
    onDeadlineExceeded: (model, version, waitedMs) => {
      const step = deps.models.view.of(model).rollout;
      if (!step) return;
      deps.control.recordFigures(model, step, version, 0, 1, [waitedMs]).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'rollout figures not recorded'));
    },
    ...(deps.tracing ? { tracing: deps.tracing } : {}),
  });
  // Batch uploads step aside while this gateway serves interactive requests,
  // counted from the moment one arrives (before auth and rate limiting).
  const interactive = new InteractiveRequests();
  const handlers = new JobHandlers(jobs, { maxBodyBytes: config.maxBodyBytes, maxWaitMs: config.maxWaitMs, interactive });
  mountJobRoutes(app, handlers, guard, config.maxBodyBytes, deps.tracing, interactive);
  const dispatch = jobDispatch({
    handlers,
    apiKeyDigests: config.apiKeyDigests,
    rateLimiter,
    rateLimitPerSecond: config.rateLimitPerSecond,
    interactive,
    metrics,
    logger,
    maxBodyBytes: config.maxBodyBytes,
    ...(deps.tracing ? { tracing: deps.tracing } : {}),
  });

  let openapi: unknown;
  app.use(opsRoutes({ redis: deps.redis, connections: deps.connections ?? [deps.redis], metrics, openapi: () => (openapi ??= buildOpenApi()), models: deps.models, fleet: deps.fleet }));

  // The model lifecycle's admin routes take admin keys, not API keys: ahead of the tenants' /v1 router.
  const admin = requireAdminKey({ admins: config.adminKeyDigests, tenants: config.apiKeyDigests });
  app.use(
    '/v1/models',
    modelAdminRoutes({ catalog: deps.models, control: deps.control, repository: deps.repository, admin, adminOf: (req) => adminKeyName({ admins: config.adminKeyDigests }, req) }),
  );
  // An admin key that no admin route took (a method a path does not serve): 404, as for a tenant, not a
  // 401 from the tenants' key check saying the key is not valid.
  app.use('/v1/models', (req, _res, next) => (isAdmin(req) ? notFoundRoute(req, _res, next) : next()));

  const v1 = express.Router();
  // An admin key on a /v1 path or method nobody serves is told 404, as a tenant is (the key counts); on a
  // tenant's route, the tenants' key check below says it is not a valid API key.
  v1.use((req, res, next) => (isAdmin(req) && !isDocumentedRoute(req.method, req.baseUrl + req.path) ? notFoundRoute(req, res, next) : next()));
  v1.use(...guard);
  v1.use('/models', modelRoutes(deps.models));
  // Before the batch router: /jobs/{id}/webhook_deliveries and the like (see routes/webhooks.ts).
  v1.use(
    webhookRoutes({
      secrets: new WebhookSecrets(deps.redis, config.queuePrefix),
      events: deps.webhookEvents,
      jobTenant: (id) => jobs.tenantOf(id),
      batchTenant: async (id) => (await deps.batchStore.get(id))?.tenant ?? null,
    }),
  );
  const batches = new BatchService({
    interactive,
    onRowsFailed: (model, version, rows) => metrics.bulkRowsFailed(model, version, rows),
    models: deps.models,
    fleet: deps.fleet,
    store: deps.batchStore,
    queues: deps.bulkQueues,
    webhookAllowPrivate: config.webhookAllowPrivate,
    logger,
    openBatches: new OpenBatches({
      redis: deps.redis,
      prefix: config.queuePrefix,
      limit: config.tenantMaxOpenBatches,
      status: (id) => deps.batchStore.status(id),
      ttlMs: UNENDED_BATCH_TTL_MS + config.resultTtlMs,
    }),
    queueClosed: (m) => deps.control.isQueueClosed(m.name, m.version),
    memory: new RedisMemory(deps.redis),
    ...(deps.parseThread ? { parseThread: deps.parseThread } : {}),
  });
  // Parses its own bodies: the NDJSON form is read as a stream, never whole.
  v1.use('/batches', batchRoutes(batches, { maxBodyBytes: config.maxBodyBytes, uploadTimeLimitMs: deps.uploadTimeLimitMs ?? REQUEST_TIME_LIMIT_MS }));
  app.use('/v1', v1);

  // Operators' routes, each behind requireAdminKey (http/admin-auth.ts); handlers read req.admin.
  // The dashboard also takes Basic credentials, so a person can open it in a browser.
  if (deps.dashboard) {
    app.use(QUEUE_DASHBOARD_PATH, requireAdminKey({ admins: config.adminKeyDigests, tenants: config.apiKeyDigests, basicRealm: 'infer admin' }), deps.dashboard.handler);
  }

  app.use(notFoundRoute);
  app.use(problemMiddleware(logger, config.maxBodyBytes, (answer) => metrics.problem(answer.code)));
  return {
    app,
    continueBody: (req) => {
      const path = req.url ?? '';
      if (!/^\/v1(\/|\?|$)/i.test(path)) return true;
      if (authenticate(req.headers.authorization, config.apiKeyDigests) !== undefined) return true;
      if (adminKeyName({ admins: config.adminKeyDigests }, req) === undefined) return false;
      // An admin key: its routes are under /v1/models, and a path nobody serves is its 404 (as above); on a
      // tenant's route the tenants' key check answers 401, before the body, as for an unknown key.
      return /^\/v1\/models(\/|\?|$)/i.test(path) || !isDocumentedRoute(req.method ?? '', path.split('?')[0]!);
    },
    listener: (req, res) => {
      if (!dispatch(req, res)) app(req, res);
    },
    rateLimiter,
    deadlineSweep: new DeadlineSweep({
      versions: () => [...deps.models.all(), ...deps.models.drainingWithQueuedWork()],
      queueOf: (version) => deps.writer.queueOf(version),
      fleet: deps.fleet,
      expire: (id) => jobs.expireQueued(id),
      logger,
    }),
  };
}
