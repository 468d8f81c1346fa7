/**
 * Reusable pieces of operations: problem+json error responses (each listing
 * exactly the `code`s it can carry), headers and parameters.
 */
import type { ErrorCode } from '@infer/errors';
import { PROBLEM_TITLES, PROBLEM_TYPE_BASE } from '@infer/errors';
import { ref, type JsonObject } from './schemas.js';

export interface ProblemOptions {
  /** Add the `Retry-After` header (429 and 503). */
  retryAfter?: boolean;
  /** The example's `detail`; by default a typical one for the first code. */
  detail?: string;
}

/** A problem+json response whose `code` is one of `codes`, with an example of the first. */
export function problem(status: number, description: string, codes: readonly [ErrorCode, ...ErrorCode[]], options: ProblemOptions = {}): JsonObject {
  const { retryAfter = false } = options;
  const first = codes[0];
  return {
    description,
    ...(retryAfter ? { headers: { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } } } : {}),
    content: {
      'application/problem+json': {
        schema: { allOf: [ref('Problem'), { properties: { status: { const: status }, code: { enum: [...codes] } } }] },
        example: {
          type: PROBLEM_TYPE_BASE + first.replaceAll('_', '-'),
          title: PROBLEM_TITLES[status] ?? 'Error',
          status,
          detail: options.detail ?? EXAMPLE_DETAIL[first] ?? description,
          code: first,
        },
      },
    },
  };
}

const EXAMPLE_DETAIL: Partial<Record<ErrorCode, string>> = {
  invalid_json: 'The body is not valid JSON',
  invalid_input: 'body: Unrecognized key: "extra"',
  model_not_found: 'No model named "resnet"',
  job_not_found: 'No job with id "6f1c2b7e-9a4d-4e8b-b1f2-3c4d5e6f7a8b"',
  unauthorized: 'A valid API key is required: Authorization: Bearer <key>',
  rate_limited: 'More than 1000 requests a second for this API key',
  payload_too_large: 'The body is larger than the limit of 10485760 bytes',
  queue_full: 'The queue holds 1000000 instances, over its limit of 1000000; retry later',
  unavailable: 'The queue backend (Redis) is unavailable; try again shortly',
  conflict: 'The job has already ended (succeeded); only queued or running jobs can be canceled',
};

/** Components shared by reference: the 500 every route may answer, headers, parameters. */
export const sharedResponses: JsonObject = {
  InternalError: problem(500, 'An unexpected error. The details are in the gateway’s log only; the body never carries a stack trace.', ['internal_error']),
};

export const sharedHeaders: JsonObject = {
  RetryAfter: {
    description: 'Seconds to wait before retrying.',
    schema: { type: 'integer', minimum: 1 },
  },
  Location: {
    description: 'The relative URL of the resource: `/v1/jobs/{id}` or `/v1/batches/{id}`.',
    schema: { type: 'string' },
  },
  PreferenceApplied: {
    description:
      'Present when the request sent `Prefer: wait`: `wait=N`, the seconds actually waited for at most (RFC 7240), after capping N at MAX_WAIT_SECONDS.',
    schema: { type: 'string', pattern: '^wait=\\d+$', examples: ['wait=10'] },
  },
};

export const sharedParameters: JsonObject = {
  PreferWait: {
    name: 'Prefer',
    in: 'header',
    required: false,
    description:
      '`wait` or `wait=N` (RFC 7240): hold the response until the job ends or N seconds pass. N is capped at MAX_WAIT_SECONDS ' +
      '(default 60); a bare `wait` means that maximum. The response then carries `Preference-Applied: wait=N`.',
    schema: { type: 'string', examples: ['wait', 'wait=10'] },
  },
  IdempotencyKey: {
    name: 'Idempotency-Key',
    in: 'header',
    required: false,
    description:
      'The same key from the same tenant within 24 h returns the first job with 200 and enqueues nothing new. Keys are per tenant.',
    schema: { type: 'string', minLength: 1 },
  },
  JobId: { name: 'id', in: 'path', required: true, description: 'The job id.', schema: { type: 'string' } },
  BatchId: { name: 'id', in: 'path', required: true, description: 'The batch id.', schema: { type: 'string' } },
  ModelName: { name: 'name', in: 'path', required: true, description: 'The model name.', schema: { type: 'string' } },
};

/** What any `/v1` operation may answer, besides its own responses. */
export const v1Errors: JsonObject = {
  '401': problem(401, 'Missing or unknown API key.', ['unauthorized']),
  '429': problem(
    429,
    'Over RATE_LIMIT_PER_SECOND requests in one second for this API key. The count is kept in Redis, so all gateway replicas share one budget.',
    ['rate_limited'],
    { retryAfter: true },
  ),
  '500': { $ref: '#/components/responses/InternalError' },
};

/** 503 for a route that reads or writes Redis. */
export const unavailable503 = problem(503, 'Redis is unreachable.', ['unavailable'], { retryAfter: true });

/** 503 for a route that enqueues: Redis unreachable, or the queues over MAX_QUEUE_DEPTH. */
export const submit503 = problem(
  503,
  'Redis is unreachable (`unavailable`), or the queued instances are over MAX_QUEUE_DEPTH (`queue_full`). The depth is ' +
    're-counted at most every 250 ms per gateway, so a burst may overshoot the limit by that much.',
  ['queue_full', 'unavailable'],
  { retryAfter: true },
);

/** Shorthand for a JSON response of a component schema. */
export function json(description: string, schema: JsonObject, extra: JsonObject = {}): JsonObject {
  return { description, ...extra, content: { 'application/json': { schema } } };
}
