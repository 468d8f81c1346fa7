import { assertDatabase, awaitAtMost, letGo } from '@infer/lifecycle';
import { Redis } from 'ioredis';
import type { Config } from '@infer/config';
import { BatchStore, FINISH_CHUNK_COMMAND, batchCompletedWebhook } from '@infer/batch-store';
import { keepPlatformClock } from '@infer/contract';
import { throttledWarn, type Logger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { ModelControl } from '@infer/model-control';
import { LiveVersions } from './live-versions.js';
import { WebhookDeliveryWorker, WebhookEvents, eventIdFor, type Resolver } from '@infer/webhooks';
import { WorkerHeartbeat } from '@infer/fleet';
import { CompletedEventsOutbox, FINISH_COMMAND, MARK_RUNS_COMMAND, candidateQueue } from '@infer/job-store';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { WorkerMetrics } from './metrics.js';
import { serveMetrics } from './metrics-server.js';
import { BulkWorker } from './bulk/bulk-worker.js';
import { Sweeper, type SweepOutcome } from './sweeper.js';
import { InteractiveWorker } from './interactive/interactive-worker.js';
import { JobWebhookEmitter } from './interactive/job-webhooks.js';
import type { TracerProvider } from '@opentelemetry/api';
import { Tracing } from '@infer/tracing';

export interface InferenceWorker {
  models: ModelRepository;
  /** Its metrics; with `metrics: false`, WorkerMetrics.off() (enabled false, never counted into). */
  metrics: WorkerMetrics;
  /** The port its /metrics and /healthz are served on (WORKER_METRICS_PORT, or the one picked for 0). */
  metricsPort: number;
  /** Read the models' shared state now and act on it (otherwise once a second): tests use it to know a look happened. */
  lookAtModels(): Promise<void>;
  /** Run a sweep now, as its timer does fleet-wide every 30 s (see Sweeper): tests use it. */
  sweep(): Promise<SweepOutcome>;
  close(): Promise<void>;
}

/** Longest a closing worker waits for its goodbye to the fleet (a round trip with Redis up). */
const LEAVE_FLEET_MS = 1000;

/**
 * Wire a worker process from config: per model version it serves
 * (WORKER_MODELS, or all), an InteractiveWorker for jobs and a BulkWorker for
 * batch chunks, sharing Redis connections for commands.
 */
export async function createWorker(
  config: Config,
  logger: Logger,
  options: {
    models?: ModelRepository;
    blockSeconds?: number;
    /** The most output bytes one call that ends work carries (see CALL_OUTPUT_BYTES): tests lower it to reach it with small outputs. */
    callOutputBytes?: number;
    /** How webhook host names resolve (tests inject one). @default dns.lookup */
    webhookResolve?: Resolver;
    /** Trace with this provider (tests: an in-memory exporter) instead of OTEL_EXPORTER_OTLP_ENDPOINT's. */
    tracerProvider?: TracerProvider;
    /**
     * Prometheus metrics (WorkerMetrics, GET /metrics). Off: the model
     * workers count nothing and /metrics answers 404 (/healthz stays); for
     * measuring what metrics cost (the `observability` bench section).
     * @default true
     */
    metrics?: boolean;
  } = {},
): Promise<InferenceWorker> {
  const tracing = Tracing.create({
    serviceName: 'infer-worker',
    endpoint: config.otlpEndpoint,
    provider: options.tracerProvider,
    // Once in 10 s at most: a collector that is down fails every batch.
    onExportError: throttledWarn(logger, 'traces could not be exported to OTEL_EXPORTER_OTLP_ENDPOINT (they are dropped)'),
  });
  const ownModels = !options.models;
  const models = options.models ?? (await ModelRepository.load(config.modelRepository, { only: config.workerModels }));
  const metrics = options.metrics === false ? WorkerMetrics.off() : new WorkerMetrics();
  // What the model workers count into: none with metrics off (they take it as optional).
  const counted = metrics.enabled ? metrics : undefined;
  // Before any connection: a port already taken stops the worker here, with little to undo.
  const metricsServer = await serveMetrics(metrics, config.workerMetricsPort, config.host, config.workerMaxRunMs, logger).catch(async (err: unknown) => {
    if (ownModels) await models.close();
    throw err;
  });
  // BullMQ workers need maxRetriesPerRequest: null so a Redis blip pauses them instead of crashing them.
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  // The stores get a connection of their own: ioredis copies every script
  // defined on a connection (BullMQ defines ~65) into each pipeline it builds,
  // which on the shared one cost an eighth of the worker's CPU.
  //
  // The scripts that end work (a micro-batch's FINISH, a chunk's results) are written at once, not
  // auto-pipelined: an auto-pipeline leaves on a setImmediate, and onnxruntime-node starts the next run
  // on one too; a run queued first would hold the end, and the answers it sends, for its whole length.
  // So is a batch's note that its run begins, which must be in the kernel before that run starts.
  const storeConnection = new Redis(config.redisUrl, {
    maxRetriesPerRequest: null,
    enableAutoPipelining: true,
    autoPipeliningIgnoredCommands: [FINISH_COMMAND, FINISH_CHUNK_COMMAND, MARK_RUNS_COMMAND],
  });
  for (const conn of [connection, storeConnection]) {
    conn.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
  }
  // Before anything is written: on database 0 by mistake, it would write another deployment's keys.
  await Promise.all([connection, storeConnection].map((conn) => assertDatabase(conn))).catch(async (err: unknown) => {
    for (const conn of [connection, storeConnection]) conn.disconnect();
    await metricsServer.close();
    if (ownModels) await models.close();
    throw err;
  });
  // Every stamp that another process reads (started_at, completed_at, deadlines judged, heartbeats) is on Redis's clock.
  const stopClock = await keepPlatformClock(storeConnection, throttledWarn(logger, "could not read Redis's clock (TIME); keeping the last offset"));
  // Webhook events are produced here (jobs start and end, batches complete) and
  // delivered here too, on their own queue and worker: never in a model's way.
  const webhookEvents = new WebhookEvents({
    connection,
    prefix: config.queuePrefix,
    resultTtlMs: config.resultTtlMs,
    retryDelaysMs: config.webhookRetryDelaysMs,
    logger,
    telemetry: tracing.bullmq,
  });
  const webhooks = new JobWebhookEmitter(webhookEvents, logger);
  const outbox = new CompletedEventsOutbox(storeConnection, config.queuePrefix, webhookEvents, logger);
  // Bulk work (chunks of batches) for the same model versions, each yielding to its InteractiveWorker.
  const batchStore = new BatchStore(storeConnection, {
    prefix: config.queuePrefix,
    resultTtlMs: config.resultTtlMs,
    // One id per batch (ensure): the workers' sweep sends it again if this process dies first, and it is delivered once.
    onEnded: async (batch) => {
      const event = batchCompletedWebhook(batch);
      if (event) await webhookEvents.ensure(eventIdFor('batch.completed', batch.id), event);
    },
    onError: (err, what) => logger.warn({ err: (err as Error).message }, what),
  });
  const control = new ModelControl(storeConnection, config.queuePrefix);
  const workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  let heartbeat: WorkerHeartbeat | undefined;
  // Per model version it serves: an InteractiveWorker for jobs and a BulkWorker for batch chunks,
  // started and stopped as versions come and go (LiveVersions).
  const live: LiveVersions = new LiveVersions({
    repository: models,
    control,
    redis: storeConnection,
    prefix: config.queuePrefix,
    pollMs: config.modelPollMs,
    actor: `worker:${workerId}`,
    candidateQueue: (model, version) => candidateQueue(storeConnection, config.queuePrefix, model, version),
    logger,
    ...(config.workerModels.length ? { only: config.workerModels } : {}),
    changed: () => void heartbeat?.beat(),
    batchesUnended: (model) => batchStore.hasUnended(model.name, model.version),
    workersFor: (model) => {
      const interactive = new InteractiveWorker({
        model,
        connection,
        storeConnection,
        logger,
        prefix: config.queuePrefix,
        lockMs: config.workerLockMs,
        maxRunMs: config.workerMaxRunMs,
        resultTtlMs: config.resultTtlMs,
        maxOutputBytes: config.maxOutputBytes,
        ...(options.callOutputBytes ? { callOutputBytes: options.callOutputBytes } : {}),
        ...(counted ? { metrics: counted } : {}),
        webhooks,
        outbox,
        tracing,
        // A rollout judges a version by its jobs' outcomes and latencies: counted only while one runs.
        onEnded: (succeeded, failed, latenciesMs) => {
          const step = live.rolloutStep(model.name);
          if (!step) return;
          control.recordFigures(model.name, step, model.version, succeeded, failed, latenciesMs).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'rollout figures not recorded'));
        },
        ...(options.blockSeconds ? { blockSeconds: options.blockSeconds } : {}),
      });
      const bulk = new BulkWorker({
        model,
        connection,
        store: batchStore,
        logger,
        prefix: config.queuePrefix,
        lockMs: config.workerLockMs,
        maxRunMs: config.workerMaxRunMs,
        maxOutputBytes: config.maxOutputBytes,
        ...(options.callOutputBytes ? { callOutputBytes: options.callOutputBytes } : {}),
        gate: interactive,
        tracing,
        ...(counted ? { metrics: counted } : {}),
        ...(options.blockSeconds ? { blockSeconds: options.blockSeconds } : {}),
      });
      return {
        start: () => {
          interactive.start();
          bulk.start();
        },
        close: async () => {
          await Promise.allSettled([bulk.close(), interactive.close()]);
        },
      };
    },
  });
  await live.start();
  const sweeper = new Sweeper({
    redis: storeConnection,
    prefix: config.queuePrefix,
    batchStore,
    served: () => live.served(),
    logger,
    onLostRows: (model, rows) => metrics.forVersion(model).bulkRowsEnded(0, rows),
  });
  const deliveries = new WebhookDeliveryWorker({
    connection,
    prefix: config.queuePrefix,
    logger,
    retryDelaysMs: config.webhookRetryDelaysMs,
    resultTtlMs: config.resultTtlMs,
    allowPrivate: config.webhookAllowPrivate,
    lockMs: config.workerLockMs,
    maxRunMs: config.workerMaxRunMs,
    telemetry: tracing.bullmq,
    ...(options.webhookResolve ? { resolve: options.webhookResolve } : {}),
    onAttempt: (outcome, ms) => metrics.webhookAttempt(outcome, ms),
  });
  // Tell the fleet what this worker serves: gateways refuse jobs for a version no live worker has.
  heartbeat = new WorkerHeartbeat(storeConnection, config.queuePrefix, workerId, () => live.report(), throttledWarn(logger, 'heartbeat failed'));
  await heartbeat.start();
  logger.info({ models: live.served().map((m) => `${m.name}@${m.version}`), worker: heartbeat.id, metricsPort: metricsServer.port }, 'worker started');

  let closing: Promise<void> | undefined;
  return {
    models,
    metrics,
    metricsPort: metricsServer.port,
    lookAtModels: () => live.look(),
    sweep: () => sweeper.sweep(),
    close() {
      closing ??= (async () => {
        // Leave the fleet first: gateways stop sending work this worker will not take. While Redis is away
        // the goodbye would wait for its return (this connection queues commands offline): only stop beating
        // then, and the heartbeat's key expires by itself. Bounded too: a signal handled right after a model
        // run can find Redis gone before the connection has noticed, and the rest of the close (which judges
        // by the same status how long to wait) must not start only once Redis is back.
        await awaitAtMost(heartbeat!.stop({ leave: storeConnection.status === 'ready' }), LEAVE_FLEET_MS);
        await sweeper.close();
        await Promise.allSettled([live.close(), deliveries.close()]);
        // After the model workers: their last batches may still have enqueued events.
        await webhookEvents.close().catch(() => undefined);
        stopClock();
        // quit() would wait for Redis to come back, likewise: while it is away, drop the connections.
        for (const conn of [connection, storeConnection]) await letGo(conn);
        if (ownModels) await models.close();
        await metricsServer.close();
        await tracing.shutdown().catch(() => undefined);
      })();
      return closing;
    },
  };
}
