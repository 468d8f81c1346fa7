import type { IncomingMessage } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, internalProblem, notFound, toProblem, unavailable } from '@infer/errors';
import { throttledWarn, type Logger } from '@infer/logger';

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
    // MISCONF: a Redis that cannot save its snapshot refuses writes; NOREPLICAS: too few replicas to write to.
    /^(OOM|LOADING|READONLY|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|MISCONF|NOREPLICAS)\b/.test(err.message)
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
      return new AppError(415, 'unsupported_media_type', 'The body\'s Content-Encoding is not supported (gzip, deflate, br, or none)');
    case 'charset.unsupported':
      return new AppError(400, 'invalid_json', 'The body must be UTF-8 JSON');
    case 'request.aborted':
      return new AppError(400, 'invalid_json', 'The request was aborted before the body was read');
    default:
      return undefined;
  }
}

/**
 * Express decodes each path parameter (`/v1/batches/:id`) with
 * decodeURIComponent before any handler runs, and throws its URIError when
 * the percent-encoding is malformed (`%zz`, or `%ff`, which is not UTF-8).
 * That is the client's malformed URL, on any route with a parameter: 400
 * `invalid_input`, never a 500. (A 404 would claim the id was looked up;
 * no id, name or event id of this API can hold a bad escape anyway.)
 */
function fromUriError(err: unknown): AppError | undefined {
  if (!(err instanceof URIError)) return undefined;
  return new AppError(400, 'invalid_input', 'The path is not valid percent-encoded UTF-8');
}

/**
 * Longest `detail` sent back. Details may quote what the client sent (an
 * unknown field's name, an id); a hostile 10 MB field name must not come
 * back as a 10 MB answer.
 */
const MAX_DETAIL_CHARS = 1024;

const bounded = (detail: string): string => (detail.length > MAX_DETAIL_CHARS ? `${detail.slice(0, MAX_DETAIL_CHARS - 3)}...` : detail);

/**
 * Per gateway (its logger), one warn line in THROTTLED_WARN_MS for each kind
 * of Redis refusal: clients retry a 503, so a line per refused request would
 * grow with the outage's traffic.
 */
const redisWarnings = new WeakMap<Logger, { full: (err: unknown) => void; away: (err: unknown) => void }>();

function warnRedisRefused(logger: Logger, err: unknown, full: boolean): void {
  let warn = redisWarnings.get(logger);
  if (!warn) {
    warn = { full: throttledWarn(logger, 'redis is out of memory (maxmemory reached)'), away: throttledWarn(logger, 'redis unavailable') };
    redisWarnings.set(logger, warn);
  }
  (full ? warn.full : warn.away)(err);
}

/** An error as the answer a client gets: status, headers and the problem+json body. */
export interface ProblemAnswer {
  status: number;
  /** The problem's `code`; undefined for a bare 500. */
  code: string | undefined;
  headers: Record<string, string>;
  body: string;
}

/**
 * The one place errors become answers: AppErrors as RFC 9457 problem+json,
 * Redis outages as 503, everything else as a bare 500 with the details only
 * in the log. Both the Express middleware and the job routes' own dispatch
 * (routes/jobs.ts) answer through it.
 */
export function problemAnswer(err: unknown, logger: Logger, maxBodyBytes: number, where: { method?: string | undefined; path: string }): ProblemAnswer {
  let appError = err instanceof AppError ? err : (fromBodyParser(err, maxBodyBytes) ?? fromUriError(err));
  if (!appError && isRedisUnavailable(err)) {
    const full = isRedisFull(err);
    appError = unavailable(full ? 'The queue backend (Redis) is full; try again shortly' : 'The queue backend (Redis) is unavailable; try again shortly', full ? 5 : 2);
    warnRedisRefused(logger, err, full);
  }
  const headers: Record<string, string> = { 'content-type': 'application/problem+json; charset=utf-8' };
  if (!appError) {
    logger.error({ err, method: where.method, path: where.path }, 'unhandled error');
    return { status: 500, code: undefined, headers, body: JSON.stringify(internalProblem()) };
  }
  if (appError.retryAfterSeconds !== undefined) headers['retry-after'] = String(appError.retryAfterSeconds);
  // RFC 9110 §15.5.2: a 401 carries the challenge it failed (the dashboard sets its own Basic one).
  if (appError.status === 401) headers['www-authenticate'] = 'Bearer realm="infer"';
  const problem = toProblem(appError);
  problem.detail = bounded(problem.detail);
  return { status: appError.status, code: appError.code, headers, body: JSON.stringify(problem) };
}

/**
 * Whether an error answer (`status`) must close its connection: the
 * request's body is not all in, and either it was being read (a limit hit
 * mid-body, a failed upload: a paused, half-read body is never drained, so
 * the keep-alive connection would carry nothing more and a shutdown would
 * wait on it) or it is a 413 (a Content-Length past the limit, refused
 * before a byte was read: reading it to its end, gigabytes if declared so,
 * only to drop it is what the 413 is there to spare). Any other body nobody
 * touched is drained by Node itself once the answer is sent, and the
 * connection kept: a client still sending (fetch streaming an upload
 * refused 429) then reads the answer instead of a reset connection.
 */
export function mustClose(req: IncomingMessage, status: number): boolean {
  return !req.complete && (req.readableFlowing !== null || status === 413);
}

/** `onAnswer` is told each problem answered (the gateway counts rejections by code). */
export function problemMiddleware(logger: Logger, maxBodyBytes: number, onAnswer?: (answer: ProblemAnswer) => void): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const answer = problemAnswer(err, logger, maxBodyBytes, { method: req.method, path: req.path });
    onAnswer?.(answer);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A challenge a guard set already (the dashboard's Basic one) stays.
    const headers = res.getHeader('www-authenticate') ? { ...answer.headers, 'www-authenticate': String(res.getHeader('www-authenticate')) } : answer.headers;
    if (mustClose(req, answer.status)) res.setHeader('connection', 'close');
    // A streamed answer that failed before its first byte had its coding set (sendPieces): a problem is sent as it is.
    res.removeHeader('content-encoding');
    res.status(answer.status).set(headers).send(answer.body);
  };
}

/** 404 for a request no route takes, naming its whole path (`req.path` alone is relative to a router's mount). */
export const notFoundRoute: RequestHandler = (req, _res, next) => {
  next(notFound('not_found', `No route for ${req.method} ${req.baseUrl}${req.path}`));
};
