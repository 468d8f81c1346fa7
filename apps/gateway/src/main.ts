import { runProcess } from '@infer/lifecycle';
import { createGateway } from './gateway.js';

runProcess({
  name: 'gateway',
  async start(config, logger) {
    if (config.apiKeysAreDevDefault) {
      logger.warn('API_KEYS is not set: using the development key "dev-key" (tenant "dev"). Set API_KEYS in production.');
    }
    const gateway = await createGateway(config, logger);
    const port = await gateway.listen();
    logger.info({ port, models: gateway.models.list().map((m) => m.name) }, 'gateway listening');
    // The port bound (a free one for PORT=0): npm start's banner names it.
    return { port, close: () => gateway.close() };
  },
  shutdownDeadlineMs: 10_000,
});
