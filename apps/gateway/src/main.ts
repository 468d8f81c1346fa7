import { ConfigError, loadConfig } from '@infer/config';
import { createLogger } from '@infer/logger';
import { createGateway } from './gateway.js';

/** The gateway process: config, logger, listen, and a shutdown deadline on signals. */
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
  const logger = createLogger({ level: config.logLevel, name: 'gateway' });
  if (config.apiKeysAreDevDefault) {
    logger.warn('API_KEYS is not set: using the development key "dev-key" (tenant "dev"). Set API_KEYS in production.');
  }
  const gateway = await createGateway(config, logger);
  const port = await gateway.listen();
  logger.info({ port, models: gateway.models.list().map((m) => m.name) }, 'gateway listening');

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error('shutdown took longer than 10 s; exiting');
      process.exit(1);
    }, 10_000);
    deadline.unref();
    gateway.close().then(
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
