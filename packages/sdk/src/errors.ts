/**
 * What the SDK throws. `InferApiError` is an answer from the platform: an
 * RFC 9457 problem with the contract's stable `code` (see docs/api.md). Anything
 * that never got an answer (refused connection, DNS) is the fetch error as it
 * is; a request the SDK gave up on after its own deadline is `InferTimeoutError`;
 * an id or name that cannot be sent is `InferArgumentError`.
 */

/** The problem+json body every error response carries. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
}

export class InferApiError extends Error implements ProblemDetails {
  readonly status: number;
  /** The contract's stable snake_case code, e.g. `invalid_input`, `job_not_found`. */
  readonly code: string;
  readonly detail: string;
  readonly type: string;
  readonly title: string;
  /** Seconds the server asked us to wait (`Retry-After`), on 429 and 503. */
  readonly retryAfter: number | undefined;
  readonly method: string;
  readonly url: string;

  constructor(problem: ProblemDetails, init: { retryAfter?: number | undefined; method: string; url: string }) {
    super(`${problem.status} ${problem.code}: ${problem.detail}`);
    this.name = 'InferApiError';
    this.status = problem.status;
    this.code = problem.code;
    this.detail = problem.detail;
    this.type = problem.type;
    this.title = problem.title;
    this.retryAfter = init.retryAfter;
    this.method = init.method;
    this.url = init.url;
  }
}

/** The SDK's own deadline passed: a request's `timeoutMs`, or a `wait()`'s. */
export class InferTimeoutError extends Error {
  /** The job that did not end in time (`jobs.wait`, `jobs.run`): it goes on, and can be read or canceled by this id. */
  readonly jobId: string | undefined;

  /** `cause`: the error answer that would have been retried after the deadline, if that is why. */
  constructor(message: string, options?: { cause?: unknown; jobId?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'InferTimeoutError';
    this.jobId = options?.jobId;
  }
}

/**
 * An argument that cannot be sent, refused before any request: an id or name
 * that is empty, `.` or `..`. fetch resolves such a path segment away (in
 * `/v1/models/.` the dot is removed, and the request would list every model),
 * and no job, batch, event or model is named so.
 */
export class InferArgumentError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = 'InferArgumentError';
  }
}

export function isInferApiError(err: unknown): err is InferApiError {
  return err instanceof InferApiError;
}
