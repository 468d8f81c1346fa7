/**
 * Reusable pieces of operations: problem+json error responses (each listing
 * exactly the `code`s it can carry), headers and parameters.
 */
import { IDEMPOTENCY_KEY_RE } from '@infer/contract';
import type { ErrorCode, ProblemStatus } from '@infer/errors';
import { PROBLEM_TITLES, PROBLEM_TYPE_BASE } from '@infer/errors';
import { EXAMPLE_EVENT_ID, EXAMPLE_JOB_ID, EXAMPLE_MODEL_EVENT_ID, EXAMPLE_ROLLOUT_ID, ref, type JsonObject } from './schemas.js';

export interface ProblemOptions {
  /** Add the `Retry-After` header (429 and 503). */
  retryAfter?: boolean;
  /** The example's `detail`; by default a typical one for the first code. */
  detail?: string;
}

/** A problem+json response whose `code` is one of `codes`, with an example of the first. */
export function problem(status: ProblemStatus, description: string, codes: readonly [ErrorCode, ...ErrorCode[]], options: ProblemOptions = {}): JsonObject {
  const { retryAfter = false } = options;
  const first = codes[0];
  const headers: JsonObject = {
    ...(retryAfter ? { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } } : {}),
    // RFC 9110 §11.6.1: a 401 carries the challenge (problem-middleware.ts writes it).
    ...(status === 401 ? { 'WWW-Authenticate': { $ref: '#/components/headers/WWWAuthenticate' } } : {}),
  };
  return {
    description,
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
    content: {
      'application/problem+json': {
        schema: { allOf: [ref('Problem'), { properties: { status: { const: status }, code: { enum: [...codes] } } }] },
        example: {
          type: PROBLEM_TYPE_BASE + first.replaceAll('_', '-'),
          title: PROBLEM_TITLES[status],
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
  job_not_found: `No job with id "${EXAMPLE_JOB_ID}"`,
  batch_not_found: 'No batch with id "6f1c2b7e-9a4d-4e8b-b1f2-3c4d5e6f7a8b"',
  not_found: `No webhook delivery with id "${EXAMPLE_EVENT_ID}"`,
  version_not_found: 'Model "mlp" has no version "7" (versions: 1, 2)',
  unauthorized: 'A valid API key is required: Authorization: Bearer <key>',
  forbidden: 'An API key cannot use admin routes; an admin key (ADMIN_API_KEYS) is required',
  invalid_routing: 'weights sum to 90; they must sum to 100',
  rate_limited: 'More than 1000 requests a second for this API key',
  payload_too_large: 'The body is larger than the limit of 10485760 bytes',
  queue_full: 'The queues are at their limit of 1000000 instances; retry later',
  quota_exceeded: 'This tenant has 10000 instances queued, its limit (TENANT_MAX_QUEUED); retry later',
  unavailable: 'The queue backend (Redis) is unavailable; try again shortly',
  conflict: 'The job has already ended (succeeded); only queued or running jobs can be canceled',
  unsupported_media_type: 'Content-Encoding "compress" is not supported (gzip, deflate, br, or none)',
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
  WWWAuthenticate: {
    description: 'How to authenticate: `Bearer realm="infer"` (an API key, or an admin key on the admin routes).',
    schema: { type: 'string' },
    example: 'Bearer realm="infer"',
  },
  Location: {
    description: 'The relative URL of the resource: `/v1/jobs/{id}` or `/v1/batches/{id}`.',
    schema: { type: 'string' },
  },
  IdempotentReplayed: {
    description: '`true` when an `Idempotency-Key` matched an earlier request: the job is that first one and nothing new was enqueued.',
    schema: { type: 'string', const: 'true' },
  },
  CacheControlNoStore: {
    description: '`no-store`: the answer holds a secret.',
    schema: { type: 'string', const: 'no-store' },
  },
  ContentEncoding: {
    description:
      '`gzip` on a streamed answer (a job with more than 1 MiB of output, a batch’s results file) when the request’s `Accept-Encoding` takes ' +
      'gzip; absent otherwise. Every other answer is sent uncompressed, whatever the request accepts.',
    schema: { type: 'string', const: 'gzip' },
  },
  VaryAcceptEncoding: {
    description: '`Accept-Encoding`, on a streamed answer (compressed or not): its bytes depend on that header.',
    schema: { type: 'string', examples: ['Accept-Encoding'] },
  },
  PreferenceApplied: {
    description:
      'Present when the request sent `Prefer: wait`: `wait=N`, the seconds actually waited for at most (RFC 7240), after capping N at MAX_WAIT_SECONDS.',
    schema: { type: 'string', pattern: '^wait=\\d+$', examples: ['wait=10'] },
  },
};

export const sharedParameters: JsonObject = {
  AcceptEncoding: {
    name: 'Accept-Encoding',
    in: 'header',
    required: false,
    description:
      'RFC 9110 §12.5.3. A streamed answer (a job with more than 1 MiB of output, a batch’s results file) is gzip-compressed when this takes ' +
      'gzip (`gzip`, `x-gzip` or `*` weighted above 0, and not below identity: an `identity` entry, else `*`); fetch sends `gzip, deflate` and undoes it. ' +
      'Chosen here where the contract is silent, as Triton’s HTTP endpoint does; at gzip’s fastest level.',
    schema: { type: 'string', examples: ['gzip', 'gzip, deflate', 'identity'] },
  },
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
      'The same key from the same tenant within 24 h returns the first job with 200 and enqueues nothing new. The body is not compared ' +
      'with the first one’s: a retry gets its first job even where the body would no longer pass (the version it pinned unloaded since). ' +
      'Keys are per tenant: ' +
      '1-255 visible ASCII characters (no space); any other is 400 `invalid_input`.',
    schema: { type: 'string', minLength: 1, maxLength: 255, pattern: IDEMPOTENCY_KEY_RE.source },
  },
  CancelAfter: {
    name: 'Cancel-After',
    in: 'header',
    required: false,
    description:
      'A deadline, as Replicate’s header: a duration of one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, up to 3 decimals ' +
      '(`30s`, `5m`, `1h30m`, `250ms`, `1.5s`), more than 0 and at most 24 h; anything else is 400 `invalid_input`. A job still queued at ' +
      'its deadline ends `canceled` with `error.code` `deadline_exceeded` and never runs; a job a worker has taken by then finishes.',
    schema: { type: 'string', pattern: '^([0-9]{1,9}(\\.[0-9]{1,3})?(ms|s|m|h))+$', examples: ['30s', '5m', '1h30m', '250ms'] },
  },
  JobId: {
    name: 'id',
    in: 'path',
    required: true,
    description: 'The job id (30 characters). Anything else, or another tenant’s job, is 404 `job_not_found`.',
    schema: { type: 'string' },
    example: EXAMPLE_JOB_ID,
  },
  BatchId: {
    name: 'id',
    in: 'path',
    required: true,
    description: 'The batch id (a UUID v4). Anything else, or another tenant’s batch, is 404 `batch_not_found`.',
    schema: { type: 'string' },
    example: '6f1c2b7e-9a4d-4e8b-b1f2-3c4d5e6f7a8b',
  },
  EventId: {
    name: 'event_id',
    in: 'path',
    required: true,
    description: 'The event id: the `webhook-id` header a receiver got (`msg_` then 32 hex digits).',
    schema: { type: 'string' },
    example: EXAMPLE_EVENT_ID,
  },
  ModelName: { name: 'name', in: 'path', required: true, description: 'The model name.', schema: { type: 'string' } },
  ModelVersion: {
    name: 'version',
    in: 'path',
    required: true,
    description: 'The model version, a positive integer.',
    schema: { type: 'string' },
    example: '3',
  },
  RolloutId: {
    name: 'id',
    in: 'path',
    required: true,
    description: 'The rollout id (`ro_…`). One of another model, or unknown, is 404 `not_found`.',
    schema: { type: 'string' },
    example: EXAMPLE_ROLLOUT_ID,
  },
  EventsLimit: {
    name: 'limit',
    in: 'query',
    required: false,
    description: 'Page size.',
    schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
  },
  EventsAfter: {
    name: 'after',
    in: 'query',
    required: false,
    description: 'An event id (at most 200 characters): list the events older than it. One that names no event of the model (or one no longer kept) is 400 `invalid_input`.',
    schema: { type: 'string', maxLength: 200 },
    example: EXAMPLE_MODEL_EVENT_ID,
  },
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

/**
 * What any model lifecycle admin operation may answer, besides its own
 * responses (503 `unavailable` among them: each reads or writes Redis): they
 * take an admin key (the `adminAuth` scheme) and are not rate limited.
 */
export const adminErrors: JsonObject = {
  '401': problem(401, 'No admin key, or an unknown one.', ['unauthorized'], { detail: 'An admin key is required: Authorization: Bearer <key>' }),
  '403': problem(403, 'A tenant’s API key (known, but not an admin’s); or any key on a gateway with no ADMIN_API_KEYS: the admin routes are off.', [
    'forbidden',
  ]),
  '500': { $ref: '#/components/responses/InternalError' },
};

/** 400 for a route with a path parameter: the URL's percent-encoding is malformed, so nothing was looked up. */
export const badPath = problem(400, 'A path id that is not valid percent-encoded UTF-8 (`%zz`, `%ff`).', ['invalid_input'], {
  detail: 'The path is not valid percent-encoded UTF-8',
});

/** 503 for a route that reads or writes Redis. */
export const unavailable503 = problem(
  503,
  'Redis does not answer or refuses writes (it cannot save its snapshot, or has too few replicas: `Retry-After: 2`), or refuses them because it is full (maxmemory reached, `Retry-After: 5`).',
  ['unavailable'],
  { retryAfter: true },
);

/** 503 for `POST /v1/jobs`: the only route that can answer `queue_full`. */
export const jobSubmit503 = problem(
  503,
  'The job would take the queued instances, over every queue and gateway, past MAX_QUEUE_DEPTH (`queue_full`, `Retry-After: 5`); near the ' +
    'limits, the gateways could not take turns counting the queues within 5 s (`unavailable`, `Retry-After: 1`); live workers exist but none serves the ' +
    'model version (`unavailable`, `Retry-After: 5`; with no live worker at all the job is queued for their return); a job naming no version ' +
    'when no version of the model can take jobs now, none being ready or loading (`unavailable`, `Retry-After: 5`); the version it was routed ' +
    'to is being unloaded and its queue is closed, which a gateway whose view of the routing is stale can meet (`unavailable`, `Retry-After: 1`: ' +
    'a retry is routed afresh); Redis does not answer or refuses writes (`unavailable`, `Retry-After: 2`) or is full (`unavailable`, `Retry-After: 5`, nothing written).',
  ['queue_full', 'unavailable'],
  { retryAfter: true, detail: 'The queues are at their limit of 1000000 instances; retry later' },
);

/** 503 for `POST /v1/batches`: bulk queues have no depth limit, so never `queue_full`. */
export const batchSubmit503 = problem(
  503,
  'Live workers exist but none serves the model version (`Retry-After: 5`); a batch naming no version when no version of the model can ' +
    'take jobs now (`Retry-After: 5`); the version is being unloaded and its queue is already closed, found before the body is read ' +
    '(`Retry-After: 1`: a retry is routed afresh); Redis does not answer (`Retry-After: 2`), is full, or holds over 90% of its maxmemory ' +
    '(`Retry-After: 5`: uploads stop there so that batch inputs alone never fill it); the gateway’s thread reading an NDJSON upload failed (`Retry-After: 1`; nothing was kept, send it again).',
  ['unavailable'],
  { retryAfter: true, detail: 'No live worker serves model "mlp" version 2; try again shortly' },
);

/** Shorthand for a JSON response of a component schema. */
export function json(description: string, schema: JsonObject, extra: JsonObject = {}): JsonObject {
  return { description, ...extra, content: { 'application/json': { schema } } };
}
