/**
 * `paths` and `webhooks` of the OpenAPI document: every route of docs/api.md,
 * in its order (models and their lifecycle, jobs, batches, webhooks,
 * operations), then the events the platform sends.
 */
import { DEFAULT_WEBHOOK_RETRY_DELAYS_MS } from '@infer/config';
import { CreateBatchQuery } from '@infer/contract';
import { adminErrors, badPath, batchSubmit503, jobSubmit503, json, problem, unavailable503, v1Errors } from './responses.js';
import { EXAMPLE_EVENT_ID, EXAMPLE_JOB_ID, EXAMPLE_MODEL_EVENT_ID, EXAMPLE_ROLLOUT_ID, queryParameters, ref, type JsonObject } from './schemas.js';

const param = (name: string): JsonObject => ({ $ref: `#/components/parameters/${name}` });
const header = (name: string): JsonObject => ({ $ref: `#/components/headers/${name}` });

const jobNotFound = problem(404, 'No job with this id for this tenant (another tenant’s job answers the same).', ['job_not_found']);
const batchNotFound = problem(404, 'No batch with this id for this tenant (another tenant’s batch answers the same).', ['batch_not_found']);
const deliveryNotFound = problem(404, 'No webhook delivery with this event id for this tenant: unknown, expired, or another tenant’s.', ['not_found']);
const modelNotFound = problem(
  404,
  'Unknown model (`model_not_found`); or a `version` the model cannot take jobs for now: not in the repository, not loaded on this gateway, ' +
    'draining (being unloaded) or failed to load (`version_not_found`, its `detail` saying why and which versions can be pinned).',
  ['model_not_found', 'version_not_found'],
);
const jobBadRequest = problem(
  400,
  'Malformed JSON, not UTF-8, cut off, or a body whose Content-Encoding does not decode (`invalid_json`); JSON that is not the shape of ' +
    'the body, unknown top-level fields included, a malformed `Idempotency-Key`, or a `Cancel-After` that is not a duration of more than 0 ' +
    'and at most 24 h (`invalid_input`).',
  ['invalid_input', 'invalid_json'],
);
const batchBadRequest = problem(
  400,
  'A JSON body that does not parse, is not an object, or whose Content-Encoding does not decode (`invalid_json`); batch-level fields of ' +
    'the wrong shape, unknown top-level fields, empty `items`, a bad NDJSON query string, or an upload with no items at all (`invalid_input`).',
  ['invalid_input', 'invalid_json'],
);
const unprocessable = problem(
  422,
  'Well-formed but invalid: an unknown or missing input name, a wrong shape or datatype, a non-finite number where the model takes floats, ' +
    'a shape declaring more than 2^28 elements, metadata over 4 KiB or nested deeper than 32 levels (`invalid_input`), or a webhook URL that is not allowed (`webhook_url_not_allowed`).',
  ['invalid_input', 'webhook_url_not_allowed'],
  { detail: 'input "features": shape [2] does not match the model\'s [64]' },
);
const tooLarge = problem(413, 'The body is over MAX_BODY_BYTES (default 10 MiB), decoded.', ['payload_too_large']);
const badEncoding = problem(415, 'A Content-Encoding other than `gzip` (`x-gzip`), `deflate`, `br` or `identity`.', ['unsupported_media_type']);

const JOB_EXAMPLE = {
  id: EXAMPLE_JOB_ID,
  object: 'job',
  model: 'mlp',
  version: '2',
  status: 'succeeded',
  created_at: '2025-01-01T12:00:00.000Z',
  started_at: '2025-01-01T12:00:00.004Z',
  completed_at: '2025-01-01T12:00:00.006Z',
  output: { probabilities: [0.21, 0.33, 0.18, 0.28] },
  error: null,
  metadata: { request: 'r-42' },
  metrics: { queue_ms: 4, inference_ms: 0.41, batch_size: 3 },
  webhook: null,
  webhook_events_filter: [],
  urls: { get: `/v1/jobs/${EXAMPLE_JOB_ID}`, cancel: `/v1/jobs/${EXAMPLE_JOB_ID}/cancel` },
};

const DELIVERY_EXAMPLE = {
  id: EXAMPLE_EVENT_ID,
  object: 'webhook_delivery',
  event_type: 'job.completed',
  url: 'https://example.com/hooks/infer',
  subject: { object: 'job', id: EXAMPLE_JOB_ID },
  created_at: '2025-01-01T12:00:00.007Z',
  state: 'succeeded',
  attempt_count: 2,
  next_attempt_at: null,
  attempts: [
    { attempt: 1, timestamp: '2025-01-01T12:00:00.010Z', status_code: 503, error: 'the receiver answered 503', duration_ms: 41, state: 'failed', trigger: 'scheduled' },
    { attempt: 2, timestamp: '2025-01-01T12:00:05.020Z', status_code: 200, error: null, duration_ms: 38, state: 'succeeded', trigger: 'scheduled' },
  ],
};

const adminSecurity = { security: [{ adminAuth: [] }] };
/** Routes a tenant's API key or an admin key may call (reading models). */
const tenantOrAdmin = { security: [{ bearerAuth: [] }, { adminAuth: [] }] };
const adminModelNotFound = problem(404, 'No model by that name on this gateway.', ['model_not_found']);
const rolloutNotFound = problem(404, 'No model by that name (`model_not_found`), or no rollout with this id for the model (`not_found`).', ['model_not_found', 'not_found'], {
  detail: `Model "mlp" has no rollout "${EXAMPLE_ROLLOUT_ID}"`,
});
const adminBodyBadRequest = (shape: string) =>
  problem(
    400,
    'A body that is not valid JSON, cut off, or whose Content-Encoding does not decode (`invalid_json`); ' + shape + ' (`invalid_input`).',
    ['invalid_input', 'invalid_json'],
  );
const adminTooLarge = problem(413, 'The body is over 64 KiB, decoded.', ['payload_too_large'], { detail: 'The body is larger than the limit of 65536 bytes' });
const modelAnswer = (description: string): JsonObject => ({
  description,
  content: { 'application/json': { schema: ref('Model'), example: MODEL_EXAMPLE } },
});

const MODEL_EXAMPLE = {
  name: 'mlp',
  versions: ['1', '2', '3'],
  default_version: '2',
  inputs: [{ name: 'features', datatype: 'FP32', shape: [64] }],
  outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [4] }],
  max_batch_size: 64,
  max_delay_ms: 2,
  versions_detail: [
    { version: '1', state: 'ready', workers_ready: 2 },
    { version: '2', state: 'ready', workers_ready: 2 },
    { version: '3', state: 'loading', workers_ready: 0 },
  ],
  routing: { '1': 10, '2': 90 },
  routing_source: 'explicit',
};

const ROLLOUT_EXAMPLE = {
  id: EXAMPLE_ROLLOUT_ID,
  model: 'mlp',
  version: '3',
  from: { routing: { '2': 100 }, routing_source: 'default' },
  steps: [10, 50, 100],
  step_seconds: 300,
  max_error_rate: 0.01,
  max_p50_latency_ratio: 2,
  step: 0,
  state: 'running',
  started_at: '2025-01-01T12:00:00.000Z',
  ended_at: null,
  reason: null,
};

const MODEL_EVENTS_EXAMPLE = {
  object: 'list',
  data: [
    { id: EXAMPLE_MODEL_EVENT_ID, at: '2025-01-01T12:00:00.000Z', actor: 'ops', type: 'rollout_started', data: { rollout: EXAMPLE_ROLLOUT_ID, version: '3', steps: [10, 50, 100], step_seconds: 300, weights: { '2': 90, '3': 10 } } },
    { id: 'evt_m5x2j1c0b41e7a29f3d6', at: '2025-01-01T11:58:10.000Z', actor: 'worker:node-a:4121', type: 'version_loaded', data: { version: '3', state: 'ready' } },
    { id: 'evt_m5x2hz1e8c03d5b7a9f1', at: '2025-01-01T11:58:02.000Z', actor: 'ops', type: 'version_loaded', data: { version: '3', state: 'loading' } },
  ],
  has_more: true,
};

/** The model lifecycle: routing, versions, rollouts, events; admin keys only (requireAdminKey), ahead of the tenants' /v1 routes. */
const lifecyclePaths: JsonObject = {
  '/v1/models/{name}/routing': {
    put: {
      operationId: 'setModelRouting',
      tags: ['model lifecycle'],
      summary: 'Set the routing of a model’s unpinned jobs, or return to the default',
      description:
        'Weights per version, integers summing to 100, each version with a weight above 0 `ready`; `{"weights": null}` returns to the default ' +
        '(the highest ready version takes 100). In effect on every gateway within a second; recorded as a `routing_changed` event with the admin ' +
        'as its actor. While a rollout of the model runs the routing is the rollout’s: 409 `conflict`, cancel it first.\n\nChecked in this order: ' +
        'the admin key (401, 403), the body’s bytes (413, 415, 400 `invalid_json`), the model (404), the body’s shape (400 `invalid_input`), the ' +
        'weights (422), a running rollout (409).',
      ...adminSecurity,
      parameters: [param('ModelName')],
      requestBody: {
        required: true,
        description: 'Read as JSON whatever the Content-Type.',
        content: { 'application/json': { schema: ref('SetRoutingBody'), example: { weights: { '1': 10, '2': 90 } } } },
      },
      responses: {
        '200': modelAnswer('The model, with the routing now in effect (`routing_source` `explicit`, or `default` after `null`).'),
        '400': adminBodyBadRequest('a body that is not `{"weights": {…} | null}`: not an object, unknown fields, `weights` missing or not an object of numbers'),
        '404': adminModelNotFound,
        '409': problem(409, 'A rollout of the model is running: it owns the routing until it ends or is canceled.', ['conflict'], {
          detail: 'A rollout of model "mlp" is running; cancel it before setting the routing by hand',
        }),
        '413': adminTooLarge,
        '415': badEncoding,
        '422': problem(
          422,
          'Weights that name no version, a key that is not a version, a weight that is not an integer from 0 to 100, weights that do not sum ' +
            'to 100, or a weight above 0 for a version that is not `ready` (no live worker has it loaded).',
          ['invalid_routing'],
        ),
        '503': unavailable503,
        ...adminErrors,
      },
    },
  },
  '/v1/models/{name}/versions/{version}/load': {
    post: {
      operationId: 'loadModelVersion',
      tags: ['model lifecycle'],
      summary: 'Load a version from the model repository, or take back its unload',
      description:
        'Every gateway and worker looks at the repository folder now (useful with MODEL_POLL_SECONDS=0, or after fixing a version that failed ' +
        'to load) and loads `<name>/<version>/model.onnx`. A version an admin unloaded (or one still draining) is taken back: its queue ' +
        'reopens and it is routable again once a worker has it `ready`. Recorded as `version_loaded` with `state: "loading"`; the first ' +
        'worker that has it records `version_loaded` with `state: "ready"`. A version already `ready` (and not draining) has nothing to ' +
        'load: answered as it is, nothing recorded. A new version takes default traffic only once `ready`. No body.',
      ...adminSecurity,
      parameters: [param('ModelName'), param('ModelVersion')],
      responses: {
        '202': modelAnswer('Asked; the model as this gateway sees it after one look (the version is usually `loading`, `ready` once a worker has it).'),
        '400': badPath,
        '404': problem(
          404,
          'No folder for the model in the repository (`model_not_found`), or no `<name>/<version>/model.onnx` in it (`version_not_found`).',
          ['version_not_found', 'model_not_found'],
          { detail: 'There is no mlp/7/model.onnx in the model repository' },
        ),
        '422': problem(
          422,
          'The version could not be loaded (a corrupt file, an unsupported model): the `detail` says why. The attempt is recorded ' +
            '(`version_failed`) and the version is `failed` in `versions_detail`; the other versions serve on.',
          ['invalid_input'],
          { detail: 'Version 7 of model "mlp" could not be loaded: …' },
        ),
        '503': unavailable503,
        ...adminErrors,
      },
    },
  },
  '/v1/models/{name}/versions/{version}/unload': {
    post: {
      operationId: 'unloadModelVersion',
      tags: ['model lifecycle'],
      summary: 'Unload a version: drain it, then let it go',
      description:
        'The version stops taking jobs at once (its share of an explicit routing goes to the other versions, in proportion; pinned jobs are ' +
        '404 `version_not_found`) and is `draining` while its workers finish the jobs already accepted; a few seconds later its queue is ' +
        'closed, and once its queues are empty the workers unload it and it leaves `versions_detail`. Its files stay: `…/load` takes it back. ' +
        'A version with a share of the routing a running rollout goes back to is 409 `conflict`. ' +
        'Recorded as `version_unloaded` with `state: "draining"`, then `state: "unloaded"` once it is let go. No body.',
      ...adminSecurity,
      parameters: [param('ModelName'), param('ModelVersion')],
      responses: {
        '202': modelAnswer('Draining; the model as it is now.'),
        '400': badPath,
        '404': problem(404, 'No model by that name (`model_not_found`), or no such version loaded or known to the fleet, or one already draining (`version_not_found`).', [
          'model_not_found',
          'version_not_found',
        ], { detail: 'Model "mlp" has no version "7" loaded' }),
        '409': problem(409, 'The version has a share of the routing a running rollout goes back to on a rollback or cancel (its `from`): cancel the rollout, or let it end, first.', ['conflict']),
        '503': unavailable503,
        ...adminErrors,
      },
    },
  },
  '/v1/models/{name}/rollouts': {
    post: {
      operationId: 'createRollout',
      tags: ['model lifecycle'],
      summary: 'Start moving a model’s unpinned traffic to a version, step by step',
      description:
        'The version gets `steps[0]`% of the unpinned jobs at once, the versions it replaces sharing the rest as they did. After each ' +
        '`step_seconds` the step is judged on the jobs that ended in it: more than `max_error_rate` of the version’s failed (or ended `deadline_exceeded`), or its median ' +
        'latency over `max_p50_latency_ratio` times theirs, and it is rolled back (the routing returns to `from`); otherwise the next step. ' +
        'After the last step (100) it is `completed` and the version keeps all the traffic. Any gateway or worker moves it on, so it outlives ' +
        'the gateway that started it. One rollout per model at a time. Every move is a model event.\n\nChecked in this order: the admin key, ' +
        'the body’s bytes (413, 415, 400 `invalid_json`), the model (404), the body’s shape (400 `invalid_input`: not an object, a ' +
        'field missing or of the wrong JSON type, an unknown field), its values (422 `invalid_input`), the version (422 ' +
        '`invalid_routing`), a rollout already running (409).',
      ...adminSecurity,
      parameters: [param('ModelName')],
      requestBody: {
        required: true,
        description: 'Read as JSON whatever the Content-Type.',
        content: {
          'application/json': {
            schema: ref('CreateRolloutBody'),
            example: { version: '3', steps: [10, 50, 100], step_seconds: 300, max_error_rate: 0.01, max_p50_latency_ratio: 2 },
          },
        },
      },
      responses: {
        '201': { description: 'Started: `running`, at step 0.', content: { 'application/json': { schema: ref('Rollout'), example: ROLLOUT_EXAMPLE } } },
        '400': adminBodyBadRequest('a body that is not a JSON object, a field missing or of the wrong JSON type, or an unknown field'),
        '404': adminModelNotFound,
        '409': problem(409, 'A rollout of the model is already running: one at a time.', ['conflict'], {
          detail: 'A rollout of model "mlp" is already running; one model has one rollout at a time',
        }),
        '413': adminTooLarge,
        '415': badEncoding,
        '422': problem(
          422,
          'A value out of range (a version that is not a positive integer, a step outside 1–100, a non-positive `step_seconds`, limits ' +
            'out of range), or `steps` that do not rise or do not end at 100 (`invalid_input`); ' +
            'a version that is not `ready`, or one that already takes all the traffic (`invalid_routing`).',
          ['invalid_input', 'invalid_routing'],
          { detail: 'steps: the last step must be 100' },
        ),
        '503': unavailable503,
        ...adminErrors,
      },
    },
    get: {
      operationId: 'listRollouts',
      tags: ['model lifecycle'],
      summary: 'A model’s rollouts, newest first',
      ...adminSecurity,
      parameters: [param('ModelName')],
      responses: {
        '200': json('The last 100 rollouts of the model, running or ended.', ref('RolloutList')),
        '400': badPath,
        '404': problem(404, 'No model by that name in the repository (loaded or failed).', ['model_not_found']),
        '503': unavailable503,
        ...adminErrors,
      },
    },
  },
  '/v1/models/{name}/rollouts/{id}': {
    get: {
      operationId: 'getRollout',
      tags: ['model lifecycle'],
      summary: 'Read a rollout',
      ...adminSecurity,
      parameters: [param('ModelName'), param('RolloutId')],
      responses: {
        '200': { description: 'The rollout.', content: { 'application/json': { schema: ref('Rollout'), example: ROLLOUT_EXAMPLE } } },
        '400': badPath,
        '404': rolloutNotFound,
        '503': unavailable503,
        ...adminErrors,
      },
    },
  },
  '/v1/models/{name}/rollouts/{id}/cancel': {
    post: {
      operationId: 'cancelRollout',
      tags: ['model lifecycle'],
      summary: 'Cancel a running rollout: the routing returns to what it was before it',
      description: 'The routing goes back to the rollout’s `from` (the default routing when that was the default), in the same write that ends it; recorded as `rollout_canceled`. No body.',
      ...adminSecurity,
      parameters: [param('ModelName'), param('RolloutId')],
      responses: {
        '200': json('The rollout, now `canceled`, `reason` naming the admin.', ref('Rollout')),
        '400': badPath,
        '404': rolloutNotFound,
        '409': problem(409, 'The rollout has ended (`completed`, `rolled_back` or `canceled`); or it kept moving to its next step under five tries: retry.', ['conflict'], {
          detail: `Rollout "${EXAMPLE_ROLLOUT_ID}" has ended (completed)`,
        }),
        '503': unavailable503,
        ...adminErrors,
      },
    },
  },
  '/v1/models/{name}/events': {
    get: {
      operationId: 'listModelEvents',
      tags: ['model lifecycle'],
      summary: 'A model’s events log: routing, versions, rollouts; newest first',
      description:
        'Every change to the model’s routing, versions and rollouts, with who made it; the last 1000 are kept. Paginated: pass the last ' +
        'event’s `id` as `after` for the next page while `has_more` is true.',
      ...adminSecurity,
      parameters: [param('ModelName'), param('EventsLimit'), param('EventsAfter')],
      responses: {
        '200': { description: 'A page of events.', content: { 'application/json': { schema: ref('ModelEventList'), example: MODEL_EVENTS_EXAMPLE } } },
        '400': problem(
          400,
          'An unknown query parameter, a `limit` that is not an integer from 1 to 100, an `after` over 200 characters or one that names no ' +
            'event of the model; a path whose percent-encoding is malformed.',
          ['invalid_input'],
          { detail: 'query string: after: no event "evt_m5x2k9qa3f9c1b7e0d42" in model "mlp"\'s events' },
        ),
        '404': problem(404, 'No model by that name in the repository (loaded or failed).', ['model_not_found']),
        '503': unavailable503,
        ...adminErrors,
      },
    },
  },
};

const jobResponse = (description: string, extraHeaders: JsonObject = {}): JsonObject => ({
  description,
  headers: { 'Preference-Applied': header('PreferenceApplied'), 'Content-Encoding': header('ContentEncoding'), Vary: header('VaryAcceptEncoding'), ...extraHeaders },
  content: { 'application/json': { schema: ref('Job'), example: JOB_EXAMPLE } },
});

const noAuth = { security: [] };

export const paths: JsonObject = {
  // -------------------------------------------------------------------------
  // Models
  '/v1/models': {
    get: {
      operationId: 'listModels',
      tags: ['models'],
      summary: 'List the models this gateway serves',
      description:
        'Every model with at least one version loaded on this gateway, with its versions’ states and the routing in effect. ' +
        'Also answers an admin key (ADMIN_API_KEYS), so an operator can watch versions change state; admins are not rate limited.',
      ...tenantOrAdmin,
      responses: { '200': json('Every model, with its default version’s tensors.', ref('ModelList')), ...v1Errors },
    },
  },
  '/v1/models/{name}': {
    get: {
      operationId: 'getModel',
      tags: ['models'],
      summary: 'Describe one model: its versions’ states and its routing',
      description: 'Also answers an admin key (ADMIN_API_KEYS), so an operator can watch versions change state; admins are not rate limited.',
      ...tenantOrAdmin,
      parameters: [param('ModelName')],
      responses: {
        '200': modelAnswer('The model.'),
        '400': badPath,
        '404': problem(404, 'No model by that name, or none of its versions loaded on this gateway.', ['model_not_found']),
        ...v1Errors,
      },
    },
  },
  ...lifecyclePaths,

  // -------------------------------------------------------------------------
  // Jobs
  '/v1/jobs': {
    post: {
      operationId: 'createJob',
      tags: ['jobs'],
      summary: 'Submit one inference instance',
      description:
        'Validates the input against the model (so bad input is a 4xx now, never a failed job later), stores the job and ' +
        'enqueues it on the queue of its model version. Answers 202 at once, or with `Prefer: wait` holds the response ' +
        'until the job ends (200) or the wait runs out (202, still queued or running).\n\nChecked in this order: the body ' +
        '(413, 415, 400), the model (404), input, webhook, filter and metadata (422); then, except for an idempotent replay, ' +
        'whether a live worker serves the version (503 `unavailable`), and the limits as the job is enqueued (503 `queue_full`, ' +
        '429 `quota_exceeded`).',
      parameters: [param('PreferWait'), param('IdempotencyKey'), param('CancelAfter'), param('AcceptEncoding')],
      requestBody: {
        required: true,
        description: 'Read as JSON whatever the Content-Type (so `curl -d` works without `-H content-type`).',
        content: { 'application/json': { schema: ref('CreateJobBody') } },
      },
      'x-body-content-type': 'any: the body is parsed as JSON regardless of the Content-Type header',
      responses: {
        '200': jobResponse(
          'The job ended within the `Prefer: wait` time; or the `Idempotency-Key` was seen before and this is the first job as it is now, ' +
            'whatever its status (nothing new enqueued; with `Prefer: wait`, after waiting on it).',
          { Location: header('Location'), 'Idempotent-Replayed': header('IdempotentReplayed') },
        ),
        '202': jobResponse('Accepted and queued (or still running when the wait ran out). Poll `Location`.', { Location: header('Location') }),
        '400': jobBadRequest,
        '404': modelNotFound,
        '409': problem(
          409,
          'An idempotent replay whose first request (same tenant and `Idempotency-Key`) has not enqueued its job within 2 s, or failed before it did: retry.',
          ['conflict'],
          { detail: 'A request with this Idempotency-Key is still being processed, or failed before its job was queued; retry' },
        ),
        '413': tooLarge,
        '415': badEncoding,
        '422': unprocessable,
        '503': jobSubmit503,
        ...v1Errors,
        '429': problem(
          429,
          'Over RATE_LIMIT_PER_SECOND for this API key (`rate_limited`); or TENANT_MAX_QUEUED is set and the job would take the tenant’s queued ' +
            'instances past it (`quota_exceeded`, `Retry-After: 5`; only that tenant’s jobs are refused).',
          ['rate_limited', 'quota_exceeded'],
          { retryAfter: true },
        ),
      },
    },
  },
  '/v1/jobs/{id}': {
    get: {
      operationId: 'getJob',
      tags: ['jobs'],
      summary: 'Read a job; with `Prefer: wait=N`, a long poll',
      description:
        'With `Prefer: wait=N` the response is held until the job ends or N seconds pass, then the job is returned as it is. ' +
        'A job with more than 1 MiB of output is answered chunked (no `Content-Length`), its JSON printed a piece at a time so as not to hold up the ' +
        'gateway’s other requests; so is `POST /v1/jobs` with `Prefer: wait` for such a job. Such an answer is gzip-compressed when `Accept-Encoding` ' +
        'takes gzip. An answer cut off midway is not a Job: read it again.',
      parameters: [param('JobId'), param('PreferWait'), param('AcceptEncoding')],
      responses: { '200': jobResponse('The job.'), '400': badPath, '404': jobNotFound, '503': unavailable503, ...v1Errors },
    },
  },
  '/v1/jobs/{id}/cancel': {
    post: {
      operationId: 'cancelJob',
      tags: ['jobs'],
      summary: 'Cancel a queued or running job',
      description: 'A running job’s output is discarded. Its `error` becomes `{code: "canceled"}`.',
      parameters: [param('JobId')],
      responses: {
        '200': json('The job, now `canceled`.', ref('Job')),
        '400': badPath,
        '404': jobNotFound,
        '409': problem(409, 'The job has already ended (canceled included).', ['conflict']),
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },

  // -------------------------------------------------------------------------
  // Batches
  '/v1/batches': {
    post: {
      operationId: 'createBatch',
      tags: ['batches'],
      summary: 'Submit a batch for bulk offline scoring',
      description:
        'Either a JSON body with `items` (also when there is no Content-Type), or an NDJSON upload ' +
        '(`Content-Type: application/x-ndjson`; `application/ndjson` and `application/jsonl` are taken too), one ' +
        '`{custom_id?, input}` a line, with `model`, `version` and `webhook` as query parameters. The NDJSON body is read ' +
        'as a stream (either form may be sent with `Content-Encoding: gzip`, `deflate` or `br`): a million lines never sit whole ' +
        'in the gateway’s memory. A line that does not parse, fails validation or is longer than MAX_BODY_BYTES becomes a ' +
        'failed item with its error; the other items still run. Bulk work never starves interactive jobs: a job ' +
        'submitted while a batch runs is served next, not behind the batch’s backlog.\n\nBefore any item is read: the model ' +
        '(404), webhook, filter and metadata (422), whether a live worker serves the version (503 `unavailable`), then the ' +
        'tenant’s open batches (429 `quota_exceeded`).',
      parameters: queryParameters(CreateBatchQuery, {
        model: 'NDJSON uploads only, and required there: the model name. (A JSON body carries `model` itself.)',
        version: 'NDJSON uploads only: the model version. Default: one chosen by the model’s routing.',
        webhook: 'NDJSON uploads only: the webhook URL for `batch.completed`.',
      }),
      requestBody: {
        required: true,
        content: {
          'application/json': { schema: ref('CreateBatchBody') },
          'application/x-ndjson': {
            schema: { type: 'string', description: 'Newline-delimited JSON: each line one BatchItem.' },
            // OpenAPI 3.1 cannot say what each line of a sequential media type is (3.2's itemSchema can).
            'x-item-schema': ref('BatchItem'),
            example: '{"custom_id":"a","input":{"features":[0.5,0.5]}}\n{"custom_id":"b","input":{"features":[0.1,0.9]}}\n',
          },
        },
      },
      responses: {
        '202': json('Accepted; poll `Location`.', ref('Batch'), { headers: { Location: header('Location') } }),
        '400': batchBadRequest,
        '404': modelNotFound,
        '408': problem(
          408,
          'An NDJSON upload that did not arrive whole within 5 minutes: cut, with `Connection: close`, and nothing of it is kept. Split a file that ' +
            'takes longer to send. (A JSON body so slow is cut by the server itself 30 s later, with a bare 408 and no problem body.)',
          ['request_timeout'],
          { detail: 'The body did not arrive whole within 300 s; nothing of it was kept. Send less at a time (split the file into batches of their own)' },
        ),
        '413': problem(413, 'The JSON body is over MAX_BODY_BYTES (an NDJSON upload has no total limit).', ['payload_too_large']),
        '415': problem(415, 'A Content-Type other than JSON or NDJSON, or a Content-Encoding other than `gzip` (`x-gzip`), `deflate`, `br` or `identity`.', [
          'unsupported_media_type',
        ]),
        '422': problem(422, 'A webhook URL that is not allowed, or batch-level fields that are invalid.', ['webhook_url_not_allowed', 'invalid_input'], {
          detail: 'webhook URL not allowed: local host names are refused',
        }),
        '503': batchSubmit503,
        ...v1Errors,
        '429': problem(
          429,
          'Over RATE_LIMIT_PER_SECOND for this API key (`rate_limited`), or the tenant already has TENANT_MAX_OPEN_BATCHES batches open: ' +
            'uploading, queued or running (`quota_exceeded`, `Retry-After: 30`, answered before the body is read).',
          ['rate_limited', 'quota_exceeded'],
          { retryAfter: true },
        ),
      },
    },
    get: {
      operationId: 'listBatches',
      tags: ['batches'],
      summary: 'List the tenant’s batches',
      parameters: [
        { name: 'limit', in: 'query', required: false, description: 'Page size.', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
        { name: 'after', in: 'query', required: false, description: 'A batch id: list the batches after it.', schema: { type: 'string' } },
      ],
      responses: {
        '200': json('A page of batches.', ref('BatchList')),
        '400': problem(400, 'An unknown query parameter, a bad `limit`, or an `after` that names no batch of the tenant.', ['invalid_input'], {
          detail: 'after: no batch with id "6f1c2b7e-9a4d-4e8b-b1f2-3c4d5e6f7a8b"',
        }),
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },
  '/v1/batches/{id}': {
    get: {
      operationId: 'getBatch',
      tags: ['batches'],
      summary: 'Read a batch',
      parameters: [param('BatchId')],
      responses: { '200': json('The batch.', ref('Batch')), '400': badPath, '404': batchNotFound, '503': unavailable503, ...v1Errors },
    },
  },
  '/v1/batches/{id}/results': {
    get: {
      operationId: 'getBatchResults',
      tags: ['batches'],
      summary: 'Download a batch’s results as NDJSON',
      description: 'One line per item, in submission order. Streamed; gzip-compressed when `Accept-Encoding` takes gzip.',
      parameters: [param('BatchId'), param('AcceptEncoding')],
      responses: {
        '200': {
          description: 'One BatchResultLine a line.',
          headers: { 'Content-Encoding': header('ContentEncoding'), Vary: header('VaryAcceptEncoding') },
          content: {
            'application/x-ndjson': {
              schema: { type: 'string', description: 'Newline-delimited JSON: each line one BatchResultLine.' },
              'x-item-schema': ref('BatchResultLine'),
            },
          },
        },
        '400': badPath,
        '404': batchNotFound,
        '409': problem(409, 'The batch has not ended yet.', ['conflict'], {
          detail: 'The batch is running; its results can be read once it has ended (completed or canceled)',
        }),
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },
  '/v1/batches/{id}/cancel': {
    post: {
      operationId: 'cancelBatch',
      tags: ['batches'],
      summary: 'Cancel a batch',
      description: 'Items not yet run end `canceled`; finished results are kept.',
      parameters: [param('BatchId')],
      responses: {
        '200': json('The batch, now `canceled`.', ref('Batch')),
        '400': badPath,
        '404': batchNotFound,
        '409': problem(409, 'The batch has already ended (canceled included).', ['conflict'], {
          detail: 'The batch has already ended (completed); only queued or running batches can be canceled',
        }),
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },

  // -------------------------------------------------------------------------
  // Webhooks
  '/v1/webhooks/secret': {
    get: {
      operationId: 'getWebhookSecret',
      tags: ['webhooks'],
      summary: 'The tenant’s webhook signing secret',
      description: 'Verify deliveries with any Standard Webhooks library, keyed with this secret.',
      responses: {
        '200': json('The secret.', ref('WebhookSecret'), { headers: { 'Cache-Control': header('CacheControlNoStore') } }),
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },
  '/v1/jobs/{id}/webhook_deliveries': {
    get: {
      operationId: 'listJobWebhookDeliveries',
      tags: ['webhooks'],
      summary: 'Every webhook event of a job, with its attempts',
      description: 'Oldest first; an empty list for a job without a webhook. The deliveries expire with the job, or later while retries are still scheduled (then listed after the job itself has expired).',
      parameters: [param('JobId')],
      responses: {
        '200': json('The job’s events.', ref('WebhookDeliveryList')),
        '400': badPath,
        '404': jobNotFound,
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },
  '/v1/batches/{id}/webhook_deliveries': {
    get: {
      operationId: 'listBatchWebhookDeliveries',
      tags: ['webhooks'],
      summary: 'Every webhook event of a batch, with its attempts',
      description: 'Oldest first; an empty list for a batch without a webhook. The deliveries expire with the batch, or later while retries are still scheduled (then listed after the batch itself has expired).',
      parameters: [param('BatchId')],
      responses: {
        '200': json('The batch’s events.', ref('WebhookDeliveryList')),
        '400': badPath,
        '404': batchNotFound,
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },
  '/v1/webhook_deliveries/{event_id}': {
    get: {
      operationId: 'getWebhookDelivery',
      tags: ['webhooks'],
      summary: 'One webhook event, with every attempt at sending it',
      parameters: [param('EventId')],
      responses: {
        '200': { description: 'The delivery.', content: { 'application/json': { schema: ref('WebhookDelivery'), example: DELIVERY_EXAMPLE } } },
        '400': badPath,
        '404': deliveryNotFound,
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },
  '/v1/webhook_deliveries/{event_id}/resend': {
    post: {
      operationId: 'resendWebhookDelivery',
      tags: ['webhooks'],
      summary: 'Send an ended event once more',
      description:
        'One more attempt, now, with the same `webhook-id` and body, signed afresh (a single attempt, not a new retry schedule; ' +
        'its `trigger` is `manual`). Only a delivery that has ended (`succeeded` or `failed`) can be resent.',
      parameters: [param('EventId')],
      responses: {
        '202': json('The attempt is queued; the delivery is `pending` again.', ref('WebhookDelivery')),
        '400': badPath,
        '404': deliveryNotFound,
        '409': problem(409, 'The delivery is still `pending`: its next attempt is already scheduled.', ['conflict'], {
          detail: 'The delivery is still pending: its next attempt is already scheduled',
        }),
        '503': unavailable503,
        ...v1Errors,
      },
    },
  },

  // -------------------------------------------------------------------------
  // Operations (no auth)
  '/healthz': {
    get: {
      operationId: 'healthz',
      tags: ['operations'],
      summary: 'Liveness: 200 while the process runs',
      ...noAuth,
      responses: { '200': json('Alive.', ref('Health')) },
    },
  },
  '/readyz': {
    get: {
      operationId: 'readyz',
      tags: ['operations'],
      summary: 'Readiness: 200 when Redis answers, with which model versions live workers serve',
      description:
        'Ready once every one of the gateway\'s Redis connections is up (each reconnects on its own schedule after an outage) ' +
        'and Redis answers a PING within 1 s. The body then also says, per model version this gateway routes to, whether ' +
        'a live worker serves it (`models`); a version none serves does not make the gateway unready, but its jobs and batches ' +
        'answer 503 `unavailable`.',
      ...noAuth,
      responses: {
        '200': {
          description: 'Ready.',
          content: {
            'application/json': {
              schema: ref('Ready'),
              example: { status: 'ready', redis: 'ok', models: { mlp: { '1': { ready: true, workers_ready: 2 }, '2': { ready: false, workers_ready: 0 } } } },
            },
          },
        },
        '503': {
          description: 'Redis does not answer (within 1 s), or one of the gateway\'s connections to it is not back yet. Plain JSON, not a problem.',
          headers: { 'Retry-After': header('RetryAfter') },
          content: { 'application/json': { schema: ref('Ready'), example: { status: 'unavailable', redis: 'unreachable' } } },
        },
      },
    },
  },
  '/metrics': {
    get: {
      operationId: 'metrics',
      tags: ['operations'],
      summary: 'Prometheus metrics',
      ...noAuth,
      responses: {
        '200': { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } },
      },
    },
  },
  '/openapi.json': {
    get: {
      operationId: 'getOpenApi',
      tags: ['operations'],
      summary: 'This document',
      ...noAuth,
      responses: {
        '200': { description: 'The OpenAPI 3.1 document.', content: { 'application/json': { schema: { type: 'object' } } } },
      },
    },
  },
};

// ---------------------------------------------------------------------------
// Webhooks: what the platform POSTs to the URL a job or batch names.

const retrySchedule = DEFAULT_WEBHOOK_RETRY_DELAYS_MS.map((ms) => (ms >= 3_600_000 ? `${ms / 3_600_000} h` : ms >= 60_000 ? `${ms / 60_000} min` : `${ms / 1000} s`));

const delivery = (operationId: string, summary: string, schema: 'JobStartedEvent' | 'JobCompletedEvent' | 'BatchCompletedEvent'): JsonObject => ({
  post: {
    operationId,
    tags: ['webhooks'],
    summary,
    description:
      'Signed per Standard Webhooks: verify `webhook-signature` over `{webhook-id}.{webhook-timestamp}.{body}` with the ' +
      'tenant’s secret from `GET /v1/webhooks/secret`. A 2xx answer is delivery. Anything else, a timeout (10 s) or a ' +
      'refused connection is retried after the delays below (a 429 or 503’s `Retry-After` is honoured, up to 24 h); 410 stops the retries. Redirects are not followed. ' +
      `Default delays between attempts: ${retrySchedule.join(', ')} (WEBHOOK_RETRY_DELAYS_MS). Delivery never blocks inference.`,
    security: [],
    'x-retry-delays-ms': DEFAULT_WEBHOOK_RETRY_DELAYS_MS,
    parameters: [param('WebhookIdHeader'), param('WebhookTimestampHeader'), param('WebhookSignatureHeader')],
    requestBody: { required: true, content: { 'application/json': { schema: ref(schema) } } },
    responses: {
      '2XX': { description: 'Delivered; no more attempts.' },
      '410': { description: 'Gone: the receiver does not want this event; retries stop.' },
      default: { description: 'Not delivered: retried later with backoff.' },
    },
  },
});

export const webhooks: JsonObject = {
  'job.started': delivery('jobStartedWebhook', 'A worker started the job (only when webhook_events_filter has `start`)', 'JobStartedEvent'),
  'job.completed': delivery('jobCompletedWebhook', 'The job ended: succeeded, failed or canceled', 'JobCompletedEvent'),
  'batch.completed': delivery('batchCompletedWebhook', 'The batch ended: completed or canceled', 'BatchCompletedEvent'),
};

export const webhookParameters: JsonObject = {
  WebhookIdHeader: {
    name: 'webhook-id',
    in: 'header',
    required: true,
    description: 'The event’s id, the same on every retry of one event: deduplicate on it.',
    schema: { type: 'string' },
  },
  WebhookTimestampHeader: {
    name: 'webhook-timestamp',
    in: 'header',
    required: true,
    description: 'Unix seconds when this attempt was signed. Reject ones too far from now (replay protection).',
    schema: { type: 'string', pattern: '^[0-9]+$' },
  },
  WebhookSignatureHeader: {
    name: 'webhook-signature',
    in: 'header',
    required: true,
    description: 'Space-separated `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, keyed with the base64-decoded part of the `whsec_` secret.',
    schema: { type: 'string', pattern: '^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$' },
  },
};
