import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, internalProblem, notFound, toProblem, unavailable } from '@infer/errors';
import type { Logger } from '@infer/logger';

/**
 * Errors from ioredis/BullMQ that mean "Redis cannot take this now", not a
 * bug: unreachable, or up but refusing (out of memory under `noeviction`,
 * still loading its data after a restart, a read-only replica, busy with a
 * long script). A client should retry them: 503 with Retry-After.
 */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return (
    err.name === 'MaxRetriesPerRequestError' ||
    /Stream isn't writeable|Connection is closed|Command timed out|ECONNREFUSED|ECONNRESET|ETIMEDOUT|connect ETIMEDOUT|Reached the max retries/i.test(err.message) ||
    /^(OOM|LOADING|READONLY|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)\b/.test(err.message)
  );
}

/** Out of memory is worth saying so in the log: an operator has to act (see docs/operations.md). */
const isRedisFull = (err: unknown): boolean => err instanceof Error && err.message.startsWith('OOM');

/** body-parser's errors carry a `type` and a status; map them onto the contract's codes. */
function fromBodyParser(err: unknown, maxBodyBytes: number): AppError | undefined {
  if (typeof err !== 'object' || err === null || !('type' in err)) return undefined;
  switch ((err as { type: string }).type) {
    case 'entity.too.large':
      return new AppError(413, 'payload_too_large', `The body is larger than the limit of ${maxBodyBytes} bytes`);
    case 'entity.parse.failed':
      return new AppError(400, 'invalid_json', 'The body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new AppError(400, 'invalid_json', 'The body must be UTF-8 JSON');
    case 'request.aborted':
      return new AppError(400, 'invalid_json', 'The request was aborted before the body was read');
    default:
      return undefined;
  }
}

/**
 * The one place errors become responses: AppErrors as RFC 9457
 * problem+json, Redis outages as 503, everything else as a bare 500 with the
 * details only in the log.
 */
export function problemMiddleware(logger: Logger, maxBodyBytes: number): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let appError = err instanceof AppError ? err : fromBodyParser(err, maxBodyBytes);
    if (!appError && isRedisUnavailable(err)) {
      const full = isRedisFull(err);
      appError = unavailable(full ? 'The queue backend (Redis) is full; try again shortly' : 'The queue backend (Redis) is unavailable; try again shortly', full ? 5 : 2);
      logger.warn({ err: (err as Error).message, path: req.path }, full ? 'redis is out of memory (maxmemory reached)' : 'redis unavailable');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (!appError) {
      logger.error({ err, method: req.method, path: req.path }, 'unhandled error');
      res.status(500).type('application/problem+json').json(internalProblem());
      return;
    }
    if (appError.retryAfterSeconds !== undefined) res.set('Retry-After', String(appError.retryAfterSeconds));
    res.status(appError.status).type('application/problem+json').json(toProblem(appError));
  };
}

export const notFoundRoute: RequestHandler = (req, _res, next) => {
  next(notFound('not_found', `No route for ${req.method} ${req.path}`));
};
