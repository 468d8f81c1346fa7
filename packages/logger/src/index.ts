import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Paths never written to the log: credentials, webhook secrets and the
 * tensors clients send and get back (they can be large and they are theirs),
 * and the command a Redis error carries (ioredis puts it on the error as
 * `command.args`: for a submit, the envelope with its jobs' metadata,
 * webhook URLs and input bytes).
 */
export const REDACT_PATHS = [
  'err.command',
  '*.err.command',
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'apiKey',
  'secret',
  '*.secret',
  'input',
  '*.input',
  'output',
  '*.output',
  'data.input',
  'data.output',
];

/** The platform's logger; `destination` (tests: a capture) defaults to stdout. */
export function createLogger(options: { level: LoggerOptions['level']; name: string; destination?: DestinationStream }): Logger {
  const settings: LoggerOptions = {
    name: options.name,
    level: options.level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}

/** A logger that writes nothing, for tests and libraries used without one. */
export const silentLogger: Logger = pino({ level: 'silent' });

/** How often a throttledWarn handler may log: one line in 10 s tells of an outage as well as a line a tick. */
export const THROTTLED_WARN_MS = 10_000;

/**
 * An error handler for work retried often (a sync every 50 ms, a look or a
 * heartbeat every second): logs `message` at warn, with the error's
 * message, at most once every THROTTLED_WARN_MS, and drops the rest.
 */
export function throttledWarn(logger: Logger, message: string): (err: unknown) => void {
  let warnedAt = -Infinity;
  return (err) => {
    if (Date.now() - warnedAt < THROTTLED_WARN_MS) return;
    warnedAt = Date.now();
    logger.warn({ err: (err as Error).message }, message);
  };
}
