import { ConfigError, loadConfig, type Config } from '@infer/config';
import { createLogger, type Logger } from '@infer/logger';

export interface RunProcessOptions {
  /** The logger's name: gateway, worker. */
  name: string;
  /** Build and start the process; what it returns is closed on SIGTERM/SIGINT. */
  start: (config: Config, logger: Logger) => Promise<{ close(): Promise<void> }>;
  /** How long a graceful shutdown may take before the process exits anyway. */
  shutdownDeadlineMs: number;
  /** Logged when a signal arrives, to say what the shutdown waits for. */
  shuttingDownMessage?: string;
}

/**
 * The edge of every app process, and the only place signals are handled:
 * read the config once (a bad value exits 2 naming every bad variable),
 * start, and on SIGTERM/SIGINT close gracefully within a deadline.
 */
export function runProcess(options: RunProcessOptions): void {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : err);
    process.exit(2);
  }
  const logger = createLogger({ level: config.logLevel, name: options.name });
  options.start(config, logger).then(
    (app) => {
      const shutdown = (signal: string) => {
        logger.info({ signal }, options.shuttingDownMessage ?? 'shutting down');
        const deadline = setTimeout(() => {
          logger.error(`shutdown took longer than ${options.shutdownDeadlineMs / 1000} s; exiting`);
          process.exit(1);
        }, options.shutdownDeadlineMs);
        deadline.unref();
        app.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
    },
    (err: unknown) => {
      logger.fatal({ err }, `${options.name} failed to start`);
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}

/**
 * Run shutdown steps in order, every one of them even if an earlier one
 * fails (a failed step is reported, not thrown): stop taking work, drain,
 * close queues, quit Redis.
 */
export async function closeInOrder(steps: ReadonlyArray<() => unknown>, onError: (err: unknown) => void): Promise<void> {
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      onError(err);
    }
  }
}
