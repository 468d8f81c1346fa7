import { assertDatabase, closeInOrder, letGo, listenError } from '@infer/lifecycle';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { Redis } from 'ioredis';
import { BatchStore, batchCompletedWebhook } from '@infer/batch-store';
import { REQUEST_TIME_LIMIT_MS, keepPlatformClock } from '@infer/contract';
import type { Config } from '@infer/config';
import { JobStore, JobWaiters, candidateQueue, versionHasQueuedWork, versionsWithQueues } from '@infer/job-store';
import { throttledWarn, type Logger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { ModelControl } from '@infer/model-control';
import { ModelCatalog } from './models/model-catalog.js';
import { hostname } from 'node:os';
import { WebhookEvents, eventIdFor } from '@infer/webhooks';
import { createApp } from './app.js';
import { BulkQueues } from './batches/bulk-queues.js';
import { ParseThread } from './batches/parse-thread/parse-thread.js';
import { EnvelopeWriter } from './jobs/envelope-writer.js';
import { FleetView } from '@infer/fleet';
import { GatewayMetrics } from './metrics.js';
import { QueueMetrics } from './queue-metrics.js';
import { QueueDashboard } from './admin/queue-dashboard.js';
import { OpenConnections } from './http/open-connections.js';
import type { TracerProvider } from '@opentelemetry/api';
import { Tracing } from '@infer/tracing';

export interface Gateway {
  app: Express;
  models: ModelRepository;
  /** The live view of the models: states, routing; `refresh()` makes a change visible at once. */
  catalog: ModelCatalog;
  waiters: JobWaiters;
  /**
   * Its Redis connections, by what each carries (named so in Redis's CLIENT LIST too). `/readyz` is
   * 200 only while all of them are up.
   */
  connections: GatewayConnections;
  /** Listen on `port` (0 for any free one); resolves with the port. */
  listen(port?: number, host?: string): Promise<number>;
  close(): Promise<void>;
}

export interface GatewayConnections {
  /** Job records, reads, admin: auto-pipelined. */
  commands: Redis;
  /** Envelope writes: one a turn at most, not auto-pipelined (see below). */
  envelopes: Redis;
  /** BullMQ's queues (bulk chunks, webhook events, the dashboard). */
  bull: Redis;
  /** The completion channel's subscription. */
  subscriber: Redis;
}

/**
 * Wire a gateway from config: Redis connections, model repository, job
 * store and queues. Used by main.ts and by the integration tests alike.
 */
export async function createGateway(
  config: Config,
  logger: Logger,
  options: {
    models?: ModelRepository;
    /** Trace with this provider (tests: an in-memory exporter) instead of OTEL_EXPORTER_OTLP_ENDPOINT's. */
    tracerProvider?: TracerProvider;
    /**
     * Prometheus metrics (GatewayMetrics, GET /metrics). Off: nothing is
     * counted and /metrics is not served; for measuring what metrics cost
     * (the `observability` bench section). @default true
     */
    metrics?: boolean;
    /** How long an NDJSON batch upload may take to arrive whole (tests: a shorter one). @default REQUEST_TIME_LIMIT_MS */
    uploadTimeLimitMs?: number;
  } = {},
): Promise<Gateway> {
  const tracing = Tracing.create({
    serviceName: 'infer-gateway',
    endpoint: config.otlpEndpoint,
    provider: options.tracerProvider,
    // Once in 10 s at most: a collector that is down fails every batch.
    onExportError: throttledWarn(logger, 'traces could not be exported to OTEL_EXPORTER_OTLP_ENDPOINT (they are dropped)'),
  });
  const redisOptions = {
    // Fail fast while Redis is down (answered as 503) instead of queueing
    // commands in memory and hanging the request.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 5000,
    lazyConnect: true,
  };
  // A command whose connection dropped is not sent again after the reconnect: Redis may have run it (an
  // enqueue twice would count its jobs twice). It fails instead (503), as any command while Redis is away.
  const redis = new Redis(config.redisUrl, { ...redisOptions, connectionName: 'infer-gateway:commands', enableAutoPipelining: true, autoResendUnfulfilledCommands: false });
  // Envelopes on a connection of their own, without auto-pipelining: one write a turn at most anyway, and
  // the auto-pipeline would copy each (a job's inputs: 100 KB for an image) once more into its batch.
  const envelopeConnection = new Redis(config.redisUrl, { ...redisOptions, connectionName: 'infer-gateway:envelopes', autoResendUnfulfilledCommands: false });
  const bullConnection = new Redis(config.redisUrl, { ...redisOptions, connectionName: 'infer-gateway:bull', maxRetriesPerRequest: null });
  const subscriber = new Redis(config.redisUrl, { connectionName: 'infer-gateway:subscriber', lazyConnect: true, maxRetriesPerRequest: null });
  const named: GatewayConnections = { commands: redis, envelopes: envelopeConnection, bull: bullConnection, subscriber };
  const connections = Object.values(named);
  for (const conn of connections) {
    conn.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
  }
  const ownModels = !options.models;
  // A gateway only validates against the models' specs: sessions it never runs, quick to build.
  const models = options.models ?? (await ModelRepository.load(config.modelRepository, { purpose: 'describe' }));
  await Promise.all(connections.map((conn) => conn.connect()));
  await Promise.all(connections.map((conn) => assertDatabase(conn)));
  // Every stamp that another process reads (created_at, deadlines, rate-limit windows) is on Redis's clock.
  const stopClock = await keepPlatformClock(redis, throttledWarn(logger, "could not read Redis's clock (TIME); keeping the last offset"));

  const store = new JobStore(redis, { prefix: config.queuePrefix, resultTtlMs: config.resultTtlMs });
  const metrics = options.metrics === false ? GatewayMetrics.off() : new GatewayMetrics();
  const waiters = new JobWaiters(subscriber, config.queuePrefix, redis);
  await waiters.start();
  const writer = new EnvelopeWriter({
    redis: envelopeConnection,
    prefix: config.queuePrefix,
    resultTtlMs: config.resultTtlMs,
    maxQueueDepth: config.maxQueueDepth,
    tenantMaxQueued: config.tenantMaxQueued,
    gatewayChannel: waiters.channel,
    onEnvelope: (model, instances) => metrics.envelopeWritten(model.name, model.version, instances),
  });
  const fleet = new FleetView(redis, config.queuePrefix);
  const control = new ModelControl(redis, config.queuePrefix);
  const catalog = new ModelCatalog({
    repository: models,
    control,
    fleet,
    pollMs: config.modelPollMs,
    actor: `gateway:${hostname()}:${process.pid}`,
    logger,
    releaseDrained: ownModels,
    // Every version this gateway may route to counts towards MAX_QUEUE_DEPTH, submitted to here yet or not.
    onVersion: (mv) => writer.queueOf(mv),
    hasQueuedWork: (model, version) => versionHasQueuedWork(redis, config.queuePrefix, model, version),
    candidateQueue: (model, version) => candidateQueue(redis, config.queuePrefix, model, version),
  });
  const webhookEvents = new WebhookEvents({
    connection: bullConnection,
    prefix: config.queuePrefix,
    resultTtlMs: config.resultTtlMs,
    retryDelaysMs: config.webhookRetryDelaysMs,
    logger,
    telemetry: tracing.bullmq,
  });
  const batchStore = new BatchStore(redis, {
    prefix: config.queuePrefix,
    resultTtlMs: config.resultTtlMs,
    // One id per batch (ensure): the workers' sweep sends it again if this process dies first, and it is delivered once.
    onEnded: async (batch) => {
      const event = batchCompletedWebhook(batch);
      if (event) await webhookEvents.ensure(eventIdFor('batch.completed', batch.id), event);
    },
    onError: (err, what) => logger.warn({ err: (err as Error).message }, what),
  });
  const bulkQueues = new BulkQueues({ connection: bullConnection, prefix: config.queuePrefix, telemetry: tracing.bullmq });
  const parseThread = config.batchParseThread ? new ParseThread(logger, { maxLineBytes: config.maxBodyBytes }) : undefined;
  await catalog.start();
  // Queue depth and age, bulk backlog and the fleet, read from Redis when scraped (fleet-wide figures).
  if (metrics.enabled) new QueueMetrics({ redis, prefix: config.queuePrefix, versions: () => models.all(), bulkQueues, fleet, registry: metrics.registry });
  // The versions loaded now and those others whose queues hold work, read on each dashboard request: the repository is live.
  const dashboard = new QueueDashboard({ connection: bullConnection, prefix: config.queuePrefix, versions: () => versionsWithQueues(redis, config.queuePrefix, models.all()) });
  const { app, listener, rateLimiter, continueBody, deadlineSweep } = createApp({ config, logger, redis, connections, ...(options.uploadTimeLimitMs ? { uploadTimeLimitMs: options.uploadTimeLimitMs } : {}), models: catalog, repository: models, control, store, waiters, writer, fleet, batchStore, bulkQueues, webhookEvents, metrics, dashboard, tracing, ...(parseThread ? { parseThread } : {}) });
  deadlineSweep.start();

  let server: Server | undefined;
  let open: OpenConnections | undefined;
  let closing: Promise<void> | undefined;
  return {
    app,
    models,
    catalog,
    waiters,
    connections: named,
    listen(port = config.port, host = config.host) {
      return new Promise((resolve, reject) => {
        server = createServer();
        const connections = (open = new OpenConnections(server));
        server.on('request', (req: IncomingMessage, res: ServerResponse) => {
          connections.counted(req, res);
          listener(req, res);
        });
        // Expect: 100-continue: the body is asked for only when the request could be served (its key is
        // known); otherwise the 401 comes first and Node closes the connection after it.
        server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
          connections.counted(req, res);
          if (continueBody(req)) res.writeContinue();
          listener(req, res);
        });
        server.listen(port, host, () => resolve((server!.address() as AddressInfo).port));
        server.once('error', (err) => reject(listenError(err, 'PORT', port, host)));
        // Long polls hold requests up to MAX_WAIT; keep-alive sockets must outlive them.
        server.keepAliveTimeout = 65_000;
        server.headersTimeout = 66_000;
        // The workers' sweep counts on this: no upload outlasts REQUEST_TIME_LIMIT_MS. The upload route cuts
        // its own at that limit with a 408 problem; Node's own (a bare 408, checked every 30 s) is the
        // backstop for every other request, a little later so that the route's answer comes first.
        server.requestTimeout = REQUEST_TIME_LIMIT_MS + 30_000;
      });
    },
    close() {
      closing ??= (async () => {
        // Stop accepting, wake every long poll so its request can answer, then let go of Redis.
        const steps: Array<() => unknown> = [
          async () => {
            if (!server) return;
            const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
            // Idle keep-alive connections, and those that have asked nothing yet, which Node would wait for.
            open?.closeUnanswered();
            // A keep-alive connection whose request ends during the shutdown would otherwise stay open for
            // keepAliveTimeout (65 s) and hold close() past its deadline: let it go as soon as it is idle.
            server.keepAliveTimeout = 1;
            await waiters.close();
            await closed;
          },
          () => catalog.close(),
          () => stopClock(),
          () => deadlineSweep.close(),
          () => rateLimiter.close(),
          () => writer.close(),
          () => bulkQueues.close(),
          () => dashboard.close(),
          () => parseThread?.close(),
          () => webhookEvents.close(),
          ...connections.map((conn) => () => letGo(conn)),
          async () => {
            if (ownModels) await models.close();
          },
          () => tracing.shutdown(),
        ];
        await closeInOrder(steps, (err) => logger.warn({ err: (err as Error).message }, 'gateway close step failed'));
      })();
      return closing;
    },
  };
}
