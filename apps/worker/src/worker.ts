import { Redis } from 'ioredis';
import type { Config } from '@infer/config';
import { JobStore } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { WorkerMetrics } from './metrics.js';
import { ModelWorker } from './model-worker.js';

export interface InferenceWorker {
  models: ModelRepository;
  metrics: WorkerMetrics;
  close(): Promise<void>;
}

/**
 * Wire a worker process from config: one ModelWorker per model version it
 * serves (WORKER_MODELS, or all), sharing one Redis connection for commands.
 */
export async function createWorker(
  config: Config,
  logger: Logger,
  options: { models?: ModelRepository; blockSeconds?: number } = {},
): Promise<InferenceWorker> {
  const ownModels = !options.models;
  const models = options.models ?? (await ModelRepository.load(config.modelRepository, { only: config.workerModels }));
  // BullMQ workers need maxRetriesPerRequest: null so a Redis blip pauses them instead of crashing them.
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null, enableAutoPipelining: true });
  connection.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
  const store = new JobStore(connection, { prefix: config.queuePrefix, resultTtlMs: config.resultTtlMs });
  const metrics = new WorkerMetrics();
  const served = models.all().filter((m) => config.workerModels.length === 0 || config.workerModels.includes(m.name));
  const workers = served.map(
    (model) =>
      new ModelWorker({
        model,
        connection,
        store,
        logger,
        prefix: config.queuePrefix,
        lockMs: config.workerLockMs,
        metrics,
        ...(options.blockSeconds ? { blockSeconds: options.blockSeconds } : {}),
      }),
  );
  for (const w of workers) w.start();
  logger.info({ models: served.map((m) => `${m.name}@${m.version}`) }, 'worker started');

  let closing: Promise<void> | undefined;
  return {
    models,
    metrics,
    close() {
      closing ??= (async () => {
        await Promise.allSettled(workers.map((w) => w.close()));
        await connection.quit().catch(() => connection.disconnect());
        if (ownModels) await models.close();
      })();
      return closing;
    },
  };
}
