/**
 * Every error the platform means to show a client is an AppError: a stable
 * snake_case `code` (part of the public contract, see docs/api.md), the HTTP status
 * it maps to, and a human-readable detail. The gateway's error middleware turns
 * these into RFC 9457 problem+json; anything else becomes a generic 500.
 */
export type ErrorCode =
  | 'invalid_json'
  | 'invalid_input'
  | 'model_not_found'
  | 'version_not_found'
  | 'job_not_found'
  | 'batch_not_found'
  | 'not_found'
  | 'unauthorized'
  | 'forbidden'
  | 'rate_limited'
  | 'quota_exceeded'
  | 'payload_too_large'
  | 'request_timeout'
  | 'unsupported_media_type'
  | 'queue_full'
  | 'unavailable'
  | 'conflict'
  | 'webhook_url_not_allowed'
  | 'invalid_routing'
  | 'inference_failed'
  | 'internal_error';

/** The HTTP statuses a problem answer has (each with its title in PROBLEM_TITLES). */
export type ProblemStatus = 400 | 401 | 403 | 404 | 408 | 409 | 413 | 415 | 422 | 429 | 500 | 503;

export interface AppErrorOptions {
  /** Seconds a client should wait before retrying; becomes `Retry-After`. */
  retryAfterSeconds?: number;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: ProblemStatus;
  readonly retryAfterSeconds: number | undefined;

  constructor(status: ProblemStatus, code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.status = status;
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/**
 * 400: the body is not JSON (`invalid_json`), or JSON that is not the shape
 * the route takes (`invalid_input`, with status 400 rather than 422).
 */
export const badRequest = (code: 'invalid_json' | 'invalid_input', message: string) =>
  new AppError(400, code, message);

/** 422: well-formed, but the values are wrong (input names, shapes, datatypes, URLs). */
export const invalidInput = (message: string, code: 'invalid_input' | 'webhook_url_not_allowed' = 'invalid_input') =>
  new AppError(422, code, message);

/** 422 `invalid_routing`: weights that do not sum to 100, are negative, or name a version that is not ready. */
export const invalidRouting = (message: string) => new AppError(422, 'invalid_routing', message);

export const notFound = (
  code: 'model_not_found' | 'version_not_found' | 'job_not_found' | 'batch_not_found' | 'not_found',
  message: string,
) => new AppError(404, code, message);

export const conflict = (message: string) => new AppError(409, 'conflict', message);

export const unauthorized = (message = 'A valid API key is required: Authorization: Bearer <key>') =>
  new AppError(401, 'unauthorized', message);

/** 403: a valid key that may not do this (a tenant's API key on an admin route). */
export const forbidden = (message: string) => new AppError(403, 'forbidden', message);

export const unavailable = (message: string, retryAfterSeconds = 1, cause?: unknown) =>
  new AppError(503, 'unavailable', message, { retryAfterSeconds, cause });

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
