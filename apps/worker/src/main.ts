import { ConfigError, loadConfig } from '@infer/config';
import { createLogger } from '@infer/logger';
import { createWorker } from './worker.js';

/** The worker process: config, logger, run, and a shutdown deadline on signals. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel, name: 'worker' });
  const worker = await createWorker(config, logger);

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down: finishing the batches in hand');
    // Jobs not finished by the deadline are not lost: their locks lapse and
    // another worker's stalled check requeues them.
    const deadline = setTimeout(() => {
      logger.error('shutdown took longer than 30 s; exiting');
      process.exit(1);
    }, 30_000);
    deadline.unref();
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
