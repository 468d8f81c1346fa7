/**
 * The schemas of the OpenAPI document, written once in zod and turned into
 * JSON Schema (2020-12, the dialect of OpenAPI 3.1) by `z.toJSONSchema`.
 *
 * Request bodies and query strings are derived from the contract's own zod
 * schemas (`CreateJobBody`, `CreateBatchBody`, `BatchItem`,
 * `CreateBatchQuery`), so the document cannot drift from what the gateway
 * validates; only `input` is refined, from "any object" to the three tensor
 * forms. Responses are TypeScript interfaces in the contract, not zod; their
 * schemas are written here and pinned to those interfaces by the
 * compile-time `Same<…>` checks at the bottom: change `Job`, `Batch`,
 * `ModelDescription`, `Rollout`, `ModelEvent` or `WebhookDelivery`
 * (@infer/contract) without changing the document and `tsc -b` fails. The
 * model lifecycle's admin bodies (`SetRoutingBody`, `CreateRolloutBody`)
 * are the contract's zod schemas, described.
 *
 * Response schemas are open (no `additionalProperties: false`) so that
 * clients generated from the document accept fields added later; request
 * bodies are closed, as the gateway rejects unknown top-level fields.
 */
import { z } from 'zod';
import {
  BATCH_STATUSES,
  BatchItem,
  CreateBatchBody,
  CreateJobBody,
  DATATYPES,
  JOB_ID_RE,
  JOB_STATUSES,
  QUEUE_TAG_LENGTH,
  VERSION_RE,
  WEBHOOK_EVENT_FILTERS,
  queueTag,
  type Batch,
  type BatchList,
  type BatchResultLine,
  type Job,
  type JobError,
  type ModelDescription,
  type ModelEvent,
  type ModelEventType,
  type ModelInfo,
  type NestedArray as NestedArrayType,
  type OutputArray as OutputArrayType,
  type Rollout,
  type RolloutState,
  type RoutingSource,
  type TensorSpec,
  type VersionDetail,
  type VersionState,
  CreateRolloutBody,
  SetRoutingBody,
} from '@infer/contract';
import type { ErrorCode } from '@infer/errors';
import { WEBHOOK_EVENT_TYPES, type WebhookAttempt, type WebhookDelivery, type WebhookSubject } from '@infer/contract';

/** Every problem `code` the gateway can answer with (the union in @infer/errors, as a runtime list). */
export const ERROR_CODES = [
  'invalid_json',
  'invalid_input',
  'model_not_found',
  'version_not_found',
  'job_not_found',
  'batch_not_found',
  'not_found',
  'unauthorized',
  'forbidden',
  'rate_limited',
  'quota_exceeded',
  'payload_too_large',
  'request_timeout',
  'unsupported_media_type',
  'queue_full',
  'unavailable',
  'conflict',
  'webhook_url_not_allowed',
  'invalid_routing',
  'inference_failed',
  'internal_error',
] as const satisfies readonly ErrorCode[];

// ---------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------

const Timestamp = z.string().meta({ format: 'date-time', description: 'RFC 3339, UTC.', examples: ['2025-01-01T12:00:00.000Z'] });

/** A job id as the gateway makes them (`newJobId`): the example is a real id of `mlp` version 2. */
export const EXAMPLE_JOB_ID = `${queueTag('mlp', '2')}P5ocflstTo-hssPU5fYHGA`;
export const EXAMPLE_BATCH_ID = '6f1c2b7e-9a4d-4e8b-b1f2-3c4d5e6f7a8b';
export const EXAMPLE_EVENT_ID = 'msg_2c1f9e4b7a3d4e8f9b0a1c2d3e4f5a6b';

const JobId = z
  .string()
  .regex(JOB_ID_RE)
  .meta({
    description:
      `30 characters: the ${QUEUE_TAG_LENGTH}-character tag of the job’s queue (base32 of a hash of model and version), then 128 random bits ` +
      'as 22 base64url characters. Another tenant’s id answers 404, exactly like one that never existed.',
    examples: [EXAMPLE_JOB_ID],
  });
const BatchId = z.string().meta({
  format: 'uuid',
  description: 'A UUID v4, lowercase (122 random bits). Another tenant’s id answers 404, exactly like one that never existed.',
  examples: [EXAMPLE_BATCH_ID],
});
const EventId = z.string().meta({
  pattern: '^msg_[0-9a-f]{32}$',
  description: 'The event id: `msg_` then 32 hex digits, the `webhook-id` header of every attempt and resend of the event.',
  examples: [EXAMPLE_EVENT_ID],
});
const METADATA =
  'Any JSON object up to 4 KiB (serialised) and 32 levels deep, echoed back unchanged. Since it comes back as it was sent, its numbers ' +
  'must be ones a double holds: `1e400`, or an integer past 2^53 − 1 below 10^21 (whose digits a double would round), is 422 ' +
  '`invalid_input`; send such ids as strings. Other numbers come back as the double they parse to: a fraction of more than ' +
  '17 significant digits rounded, `-0` as `0`, one too small for a double (`1e-400`) as `0`.';
const Metadata = z.record(z.string(), z.unknown()).describe(METADATA);
const WEBHOOK_URL =
  'An absolute http or https URL, at most 2048 characters. Private, loopback, link-local and multicast addresses, ' +
  '`localhost` and single-label host names are refused with 422 `webhook_url_not_allowed` at submit (names are checked ' +
  'again after DNS resolution at delivery), unless the deployment sets `WEBHOOK_ALLOW_PRIVATE=true`.';
const EVENTS_FILTER =
  'Which events to deliver, a subset of ["start", "completed"] (each at most once); default ["completed"]. Only together with `webhook`. ' +
  '`start` sends `job.started`; `completed` sends `job.completed` (or `batch.completed`).';

/** A nested JSON array in the instance's shape; a scalar is a bare number (or boolean for BOOL). */
export const NestedArraySchema: z.ZodType<NestedArrayType> = z
  .lazy(() => z.union([z.number(), z.boolean(), z.array(NestedArraySchema)]))
  .describe('A tensor as nested JSON arrays of the instance’s shape, without the batch dimension. A scalar is a bare number.');

/** An output: NestedArray, with null where the model computed NaN or ±Infinity. */
export const OutputArraySchema: z.ZodType<OutputArrayType> = z
  .lazy(() => z.union([z.number(), z.boolean(), z.null(), z.array(OutputArraySchema)]))
  .describe(
    'An output tensor as nested JSON arrays of the instance’s shape, without the batch dimension. A scalar is a bare number. ' +
      'null stands for NaN, Infinity or -Infinity, which JSON cannot carry.',
  );

export const DatatypeSchema = z.enum(DATATYPES).describe('Open Inference Protocol (KServe v2) datatype name.');

const Shape = z.array(z.number().int().nonnegative()).describe('The full shape of the tensor given, batch dimension left out.');

export const TensorDataSchema = z
  .object({ datatype: DatatypeSchema, shape: Shape, data: z.array(z.union([z.number(), z.boolean()])).describe('Flat values, row-major.') })
  .strict()
  .describe('A tensor as its datatype, shape and flat, row-major values.');

export const TensorB64Schema = z
  .object({
    datatype: DatatypeSchema,
    shape: Shape,
    b64: z.string().meta({ contentEncoding: 'base64', description: 'Standard, padded base64 of the little-endian element bytes, row-major.' }),
  })
  .strict()
  .describe('A tensor as raw little-endian bytes in base64: no JSON number parsing, the fast path for large tensors.');

export const TensorInputSchema = z
  .union([NestedArraySchema, TensorDataSchema, TensorB64Schema])
  .describe('One model input, in any of the three forms. For a batched model the shape is ONE instance’s.');

const Inputs = z
  .record(z.string(), TensorInputSchema)
  .describe('Each model input name mapped to its tensor. Every input is required; an unknown name is a 422.');

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

export const TensorSpecSchema = z.object({
  name: z.string(),
  datatype: DatatypeSchema,
  shape: z
    .array(z.number().int().min(-1))
    .describe('For a batched model, the shape of ONE instance (batch dimension left out); otherwise the full shape. -1 is a variable dimension.'),
});

export const VERSION_STATES = ['loading', 'ready', 'failed', 'draining'] as const satisfies readonly VersionState[];
export const ROUTING_SOURCES = ['default', 'explicit'] as const satisfies readonly RoutingSource[];

const VersionString = z.string().regex(VERSION_RE).meta({ description: 'A version: a positive integer as a string.', examples: ['2'] });

export const VersionDetailSchema = z
  .object({
    version: VersionString,
    state: z
      .enum(VERSION_STATES)
      .describe(
        '`loading`: in the repository, no live worker has it loaded yet (jobs pinned to it queue); `ready`: at least one live worker has it loaded; ' +
          '`failed`: it could not be loaded (`error` says why), here or by every live worker that tried; `draining`: unloaded by an admin or removed ' +
          'from the repository, finishing the jobs already accepted for it (no new ones), then gone from the list.',
      ),
    workers_ready: z.number().int().nonnegative().describe('Live workers that have it loaded.'),
    error: z.string().optional().describe('Why it could not be loaded; only when `failed`.'),
  })
  .describe('One version of a model and its state in the fleet.');

const RoutingWeightsSchema = z
  .record(z.string(), z.number().int().min(0).max(100))
  .meta({
    description:
      'Version → integer weight: the share of the model’s unpinned jobs each version gets. Those in effect sum to 100; empty when no version can take jobs.',
    examples: [{ '1': 90, '2': 10 }],
  });

const RoutingSourceSchema = z
  .enum(ROUTING_SOURCES)
  .describe('`explicit`: set by an admin (`PUT /v1/models/{name}/routing`) or a rollout; `default`: none set, the highest ready version takes 100.');

export const ModelSchema = z
  .object({
    name: z.string(),
    versions: z
      .array(VersionString)
      .describe('The versions a job may pin now: `ready` or `loading`, loaded on this gateway; positive integers as strings, ascending.'),
    default_version: z
      .string()
      .describe(
        'The version with the largest routing weight (ties to the higher version); its tensors are the ones below. Unpinned jobs follow `routing`, ' +
          'not only this version.',
      ),
    inputs: z.array(TensorSpecSchema).describe('Of the default version.'),
    outputs: z.array(TensorSpecSchema).describe('Of the default version.'),
    max_batch_size: z
      .number()
      .int()
      .nonnegative()
      .describe('Most instances stacked into one run. 0 when the model is not batched (Triton’s convention): it runs one job at a time.'),
    max_delay_ms: z.number().nonnegative().describe('Longest a worker holds a batch open waiting for more instances.'),
    versions_detail: z.array(VersionDetailSchema).describe('Every version the repository or the fleet knows of, with its state; ascending.'),
    routing: RoutingWeightsSchema.describe('The routing of unpinned jobs in effect now, as this gateway sees it (at most a second old).'),
    routing_source: RoutingSourceSchema,
  })
  .describe('A model, its versions’ states and the routing of its unpinned jobs.');

export const ModelListSchema = z.object({ object: z.literal('list'), data: z.array(ModelSchema) });

// ---------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------

/**
 * The codes a failed or canceled job's `error` carries, each written by one
 * place: `inference_failed` (the worker's poison isolation), `invalid_input`
 * (a worker that cannot use the input), `worker_lost` (its worker died or
 * hung repeatedly), `output_too_large` (the worker's output limits),
 * `deadline_exceeded` (still queued at its Cancel-After deadline),
 * `canceled` (`POST /v1/jobs/{id}/cancel`).
 */
export const JOB_ERROR_CODES = ['inference_failed', 'invalid_input', 'worker_lost', 'output_too_large', 'deadline_exceeded', 'canceled'] as const;

/**
 * The codes a failed batch item's `error` carries: `invalid_json` and
 * `invalid_input` (the gateway, at upload; `invalid_input` also from a
 * worker), `inference_failed`, `worker_lost`, `output_too_large` (the
 * worker's output limits), `inputs_lost` (its chunk's
 * stored inputs were gone), `retries_exhausted` (its chunk failed on every
 * attempt), `lost` (its chunk's queue entry vanished; the sweeper ends it),
 * and `internal_error` (an item the stored chunk result has no line for).
 * A canceled item has `error: null`.
 */
export const BATCH_ITEM_ERROR_CODES = [
  'invalid_json',
  'invalid_input',
  'inference_failed',
  'worker_lost',
  'output_too_large',
  'inputs_lost',
  'retries_exhausted',
  'lost',
  'internal_error',
] as const;

/** An open set of codes: the known ones listed (JSON Schema `anyOf` an enum and any string), so a code added later does not break a client. */
const openCode = (codes: readonly [string, ...string[]], description: string) => z.union([z.enum(codes), z.string()]).describe(description);

export const JobErrorSchema = z
  .object({
    code: openCode(
      JOB_ERROR_CODES,
      'Stable snake_case code: `inference_failed` (ONNX Runtime failed on this input), `invalid_input` (the worker could not use the input), ' +
        '`worker_lost` (its worker died or hung repeatedly), `output_too_large` (its outputs were over the workers’ MAX_OUTPUT_BYTES, 16 MiB by default, ' +
        'or did not fit beside those of the jobs submitted with it in the same moment, stored together in at most 256 MiB; it ran, so its metrics are set), ' +
        '`deadline_exceeded` (status `canceled`: still queued at its `Cancel-After` deadline), ' +
        '`canceled` (status `canceled`: by the client). Treat a code not listed as a failure.',
    ),
    message: z.string(),
  })
  .describe('Why a job failed or was canceled.');

export const BatchItemErrorSchema = z
  .object({
    code: openCode(
      BATCH_ITEM_ERROR_CODES,
      'Stable snake_case code: `invalid_json` (a line that does not parse), `invalid_input` (an item that does not fit the model), ' +
        '`inference_failed` (ONNX Runtime failed on this item), `worker_lost` (its chunk’s worker died or hung repeatedly), ' +
        '`output_too_large` (its outputs were over MAX_OUTPUT_BYTES, or did not fit beside those of the items run before it in its chunk, stored together in at most 256 MiB), `inputs_lost` ' +
        '(its chunk’s stored inputs were gone from Redis), `retries_exhausted` (its chunk failed for a transient reason on every attempt), ' +
        '`lost` (its chunk’s queue entry disappeared before it ran), `internal_error` (no stored result for the item). Treat a code not listed as a failure.',
    ),
    message: z.string().describe('What went wrong; for a bad item, where: `line 12: …` (NDJSON, from 1) or `items[11]: …` (JSON).'),
  })
  .describe('Why a batch item failed. A canceled item has no error.');

export const JobMetricsSchema = z.object({
  queue_ms: z.number().describe('From submit until a worker took it: started_at − created_at.'),
  inference_ms: z.number().describe('ONNX Runtime time of the batch it ran in.'),
  batch_size: z.number().int().describe('Instances in that batch.'),
});

export const CreateJobBodySchema = CreateJobBody.extend({
  model: CreateJobBody.shape.model.describe('Model name, as `GET /v1/models` lists it.'),
  version: CreateJobBody.shape.version.describe(
    'Model version, a string ("2") or an integer (2): one of the model’s `versions` (404 `version_not_found` for one draining, failed or missing). ' +
      'Default: a version chosen by the model’s `routing`.',
  ),
  input: Inputs,
  webhook: CreateJobBody.shape.webhook.describe(WEBHOOK_URL),
  webhook_events_filter: CreateJobBody.shape.webhook_events_filter.describe(EVENTS_FILTER),
  metadata: CreateJobBody.shape.metadata.describe(METADATA),
}).meta({
  description:
    'Unknown top-level fields are rejected (400 `invalid_input`). The body is read as JSON whatever its Content-Type, ' +
    'so `curl -d` works without a header.',
  examples: [{ model: 'mlp', input: { features: Array.from({ length: 64 }, () => 0.5) }, metadata: { request: 'r-42' } }],
});

export const JobSchema = z
  .object({
    id: JobId,
    object: z.literal('job'),
    model: z.string(),
    version: z.string().describe('The version that runs the job, always a string.'),
    status: z.enum(JOB_STATUSES).describe('`queued` → `running` → `succeeded` | `failed` | `canceled`.'),
    created_at: Timestamp,
    started_at: Timestamp.nullable(),
    completed_at: Timestamp.nullable(),
    output: z
      .record(z.string(), OutputArraySchema)
      .nullable()
      .describe('Each model output name mapped to the instance’s result as nested arrays (batch dimension left out); null until it succeeded.'),
    error: JobErrorSchema.nullable(),
    metadata: Metadata.nullable(),
    metrics: JobMetricsSchema.nullable().describe('Null until the job ran.'),
    webhook: z.string().nullable(),
    webhook_events_filter: z.array(z.enum(WEBHOOK_EVENT_FILTERS)).describe('Empty when the job has no webhook.'),
    urls: z
      .object({ get: z.string(), cancel: z.string() })
      .describe('Relative paths on this gateway: `/v1/jobs/{id}` and `/v1/jobs/{id}/cancel`.'),
  })
  .describe('One inference instance. An ended job stays readable for RESULT_TTL_SECONDS (default 86400).');

// ---------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------

export const BatchItemSchema = BatchItem.extend({
  custom_id: BatchItem.shape.custom_id.describe(
    'Your id for the item, echoed in its result line. Not required to be unique: a result line is the item’s by its `index` (its place in the batch), and items that share a `custom_id` each run.',
  ),
  input: Inputs,
}).describe('One item of a batch: an element of `items`, or one line of an NDJSON upload. A bad item fails alone.');

export const CreateBatchBodySchema = CreateBatchBody.extend({
  model: CreateBatchBody.shape.model.describe('Model name.'),
  version: CreateBatchBody.shape.version.describe('Model version, a string or an integer. Default: a version chosen by the model’s `routing`, once for the whole batch.'),
  items: z.array(BatchItemSchema).min(1),
  webhook: CreateBatchBody.shape.webhook.describe(WEBHOOK_URL),
  webhook_events_filter: CreateBatchBody.shape.webhook_events_filter.describe(
    '`completed` (the default) sends `batch.completed`; there is no batch start event, so `["start"]` alone sends nothing.',
  ),
  metadata: CreateBatchBody.shape.metadata.describe(METADATA),
}).describe(
  'Only the batch-level fields can fail the request (400/422). Each item is checked on its own: an item that fails ' +
    'validation becomes a failed item with its error, and the other items still run.',
);

export const BatchSchema = z.object({
  id: BatchId,
  object: z.literal('batch'),
  model: z.string(),
  version: z.string(),
  status: z.enum(BATCH_STATUSES).describe('`queued` → `running` → `completed` | `canceled`.'),
  created_at: Timestamp,
  started_at: Timestamp.nullable(),
  completed_at: Timestamp.nullable(),
  request_counts: z.object({
    total: z.number().int(),
    succeeded: z.number().int(),
    failed: z.number().int(),
    canceled: z.number().int(),
  }),
  metadata: Metadata.nullable(),
  urls: z
    .object({ get: z.string(), results: z.string(), cancel: z.string() })
    .describe('Relative paths: `/v1/batches/{id}`, `/v1/batches/{id}/results`, `/v1/batches/{id}/cancel`.'),
});

export const BatchListSchema = z
  .object({
    object: z.literal('list'),
    data: z.array(BatchSchema).describe('The tenant’s batches, newest first.'),
    has_more: z.boolean().describe('True when more batches follow: ask again with `after` = `last_id`.'),
    first_id: z.string().optional(),
    last_id: z.string().optional(),
  })
  .describe('Cursor-paginated as OpenAI’s list endpoints are.');

export const BatchResultLineSchema = z
  .object({
    index: z.number().int().nonnegative().describe('Position in the submission, from 0.'),
    custom_id: z.string().nullable(),
    status: z.enum(['succeeded', 'failed', 'canceled']),
    output: z.record(z.string(), OutputArraySchema).nullable(),
    error: BatchItemErrorSchema.nullable(),
  })
  .describe('One line of `GET /v1/batches/{id}/results`, in submission order.');

// ---------------------------------------------------------------------------
// The model lifecycle (admin routes)
// ---------------------------------------------------------------------------

export const ROLLOUT_STATES = ['running', 'completed', 'rolled_back', 'canceled'] as const satisfies readonly RolloutState[];

/** Every model event type, in the order of the events' life (pinned to the contract's union below). */
export const MODEL_EVENT_TYPES = [
  'routing_changed',
  'version_loaded',
  'version_failed',
  'version_unloaded',
  'rollout_started',
  'rollout_step',
  'rollout_completed',
  'rollout_rolled_back',
  'rollout_canceled',
] as const satisfies readonly ModelEventType[];

/** A rollout id as the gateway makes them (`newRolloutId`): `ro_` then 72 random bits in base64url. */
export const EXAMPLE_ROLLOUT_ID = 'ro_Xq3v9LmA2bT7';
export const EXAMPLE_MODEL_EVENT_ID = 'evt_m5x2k9qa3f9c1b7e0d42';

const RolloutId = z
  .string()
  .regex(/^ro_[A-Za-z0-9_-]{12}$/)
  .meta({ description: '`ro_` then 72 random bits as 12 base64url characters.', examples: [EXAMPLE_ROLLOUT_ID] });

const ModelEventId = z
  .string()
  .regex(/^evt_[0-9a-z]+$/)
  .meta({ description: '`evt_` then lowercase letters and digits. Opaque: pass it back as `after` to read older events.', examples: [EXAMPLE_MODEL_EVENT_ID] });

export const SetRoutingBodySchema = SetRoutingBody.extend({
  weights: SetRoutingBody.shape.weights.describe(
    'Version → weight: integers from 0 to 100 summing to 100, every version with a weight above 0 `ready` (a version is a positive integer ' +
      'as a string); versions with weight 0 are dropped. Otherwise 422 `invalid_routing`. `null`: back to the default routing (the highest ' +
      'ready version takes 100).',
  ),
}).meta({
  description:
    'Unknown fields, a missing `weights` or one that is not an object of numbers or null are 400 `invalid_input`. Read as JSON whatever the Content-Type.',
  examples: [{ weights: { '1': 90, '2': 10 } }, { weights: null }],
});

export const CreateRolloutBodySchema = CreateRolloutBody.extend({
  version: CreateRolloutBody.shape.version.describe('The version to roll out: a positive integer, as a string or a number. It must be `ready`, and not already take 100.'),
  steps: CreateRolloutBody.shape.steps.describe(
    'Percentages of the model’s unpinned jobs the version gets, one step after another: 1 to 20 integers from 1 to 100, strictly rising, the last 100 ' +
      '(else 422 `invalid_input`). The versions it replaces share the rest as they did.',
  ),
  step_seconds: CreateRolloutBody.shape.step_seconds.describe('How long each step runs before it is judged (more than 0, at most 86400).'),
  max_error_rate: CreateRolloutBody.shape.max_error_rate.describe(
    'Roll back when more than this share of the version’s jobs ended in a step failed (0 to 1). A job still queued at its Cancel-After deadline (`deadline_exceeded`) counts as failed; one canceled by its client does not count.',
  ),
  max_p50_latency_ratio: CreateRolloutBody.shape.max_p50_latency_ratio.describe(
    'Roll back when the version’s median latency (submit to end) in a step is over this many times that of the versions it replaces.',
  ),
}).meta({
  description:
    'A body that is not a JSON object, or with a field missing, of the wrong JSON type, or unknown, is 400 `invalid_input`; a value out of range, ' +
    'or `steps` that do not rise or do not end at 100, are 422 `invalid_input`. ' +
    'Read as JSON whatever the Content-Type.',
});

export const RolloutSchema = z
  .object({
    id: RolloutId,
    model: z.string(),
    version: VersionString.describe('The version rolled out.'),
    from: z
      .object({ routing: RoutingWeightsSchema, routing_source: RoutingSourceSchema })
      .describe('The routing in effect when it started: what a rollback or a cancel returns to (the default routing when `routing_source` is `default`).'),
    steps: z.array(z.number().int()).describe('The percentages of its steps, as created.'),
    step_seconds: z.number(),
    max_error_rate: z.number(),
    max_p50_latency_ratio: z.number(),
    step: z.number().int().nonnegative().describe('Index into `steps` of the step in effect (of the last one, once ended).'),
    state: z
      .enum(ROLLOUT_STATES)
      .describe(
        '`running` → `completed` (the last step, 100, held for `step_seconds`: the routing stays there), `rolled_back` (a step over ' +
          '`max_error_rate` or `max_p50_latency_ratio`; a version that ended no job in a step, nothing of it running, while its oldest queued job waited longer than the step and the replaced versions served theirs; the version unloaded: the routing is back to `from`), or `canceled` (by an admin: back to `from`).',
      ),
    started_at: Timestamp,
    ended_at: Timestamp.nullable().describe('Null while `running`.'),
    reason: z.string().nullable().describe('Why it was rolled back (the figures that failed the step) or who canceled it; null otherwise.'),
  })
  .describe('A rollout: a version taking a model’s unpinned traffic step by step, judged at each step, and back by itself if it does worse.');

export const RolloutListSchema = z
  .object({ object: z.literal('list'), data: z.array(RolloutSchema).describe('The model’s rollouts, newest first (the last 100).') })
  .describe('Not paginated.');

const EVENT_DATA =
  'What happened, by `type`: `routing_changed` `{weights}` (null: back to the default); `version_loaded` `{version, state}`, `state` ' +
  '`loading` when an admin asked to load it (or loaded a drained version again) and `ready` when the first worker has it; `version_failed` ' +
  '`{version, error}`; `version_unloaded` `{version, state}`, `state` `draining` (with `reason`, `unloaded` by an admin or `removed` from the ' +
  'repository) when it is marked and `unloaded` once a worker let it go, its queues empty; `rollout_started` `{rollout, version, steps, ' +
  'step_seconds, weights}`; `rollout_step` `{rollout, step, weights, figures}`; `rollout_completed` `{rollout, version, figures}`; ' +
  '`rollout_rolled_back` `{rollout, reason, figures}`; `rollout_canceled` `{rollout, version, step, weights}` (`weights`: the routing it went back to). ' +
  '`figures` are the step’s `{candidate, replaced}`, each `{succeeded, failed, p50_ms}` (the bound of the latency bucket holding the median; null with no jobs, or past the last bound, when `p50_over_ms: 60000` says so). Fields may be added.';

export const ModelEventSchema = z
  .object({
    id: ModelEventId,
    at: Timestamp.describe('When it was recorded, by Redis’s clock as it was written (RFC 3339, UTC): down the newest-first list the times never go up, whichever processes wrote them.'),
    actor: z
      .string()
      .describe('Who did it: the admin key’s name (ADMIN_API_KEYS), `rollout:<id>` for a rollout’s own steps, or the process that noticed (`worker:…`, `gateway:…`).'),
    type: z.enum(MODEL_EVENT_TYPES),
    data: z.record(z.string(), z.unknown()).describe(EVENT_DATA),
  })
  .describe('One entry of a model’s events log: every change of its routing, versions and rollouts.');

export const ModelEventListSchema = z
  .object({
    object: z.literal('list'),
    data: z.array(ModelEventSchema).describe('Newest first. The last 1000 events of the model are kept.'),
    has_more: z.boolean().describe('True when older events follow: ask again with `after` = the last event’s `id`.'),
  })
  .describe('A page of a model’s events.');

// ---------------------------------------------------------------------------
// Webhooks, errors, operations
// ---------------------------------------------------------------------------

export const WebhookSecretSchema = z.object({
  secret: z.string().meta({
    pattern: '^whsec_',
    description: 'The tenant’s Standard Webhooks signing secret: `whsec_` then base64 of the key bytes.',
  }),
});

export const WebhookAttemptSchema = z
  .object({
    attempt: z.number().int().min(1).describe('1 for the event’s first attempt, counting on across resends.'),
    timestamp: Timestamp.describe('When the attempt was made.'),
    status_code: z.number().int().nullable().describe('The receiver’s HTTP status; null when there was no answer (timeout, refused, a refused address).'),
    error: z.string().nullable().describe('Why the attempt failed; null when it succeeded.'),
    duration_ms: z.number().int().nonnegative(),
    state: z.enum(['succeeded', 'failed']),
    trigger: z.enum(['scheduled', 'manual']).describe('`manual`: a `POST /v1/webhook_deliveries/{event_id}/resend`.'),
  })
  .describe('One attempt at sending an event.');

export const WebhookDeliverySchema = z
  .object({
    id: EventId,
    object: z.literal('webhook_delivery'),
    event_type: z.enum(WEBHOOK_EVENT_TYPES),
    url: z.string().describe('Where the event is sent.'),
    subject: z
      .object({ object: z.enum(['job', 'batch']), id: z.string().describe('The job or batch id.') })
      .describe('The job or batch the event is about.'),
    created_at: Timestamp,
    state: z
      .enum(['pending', 'succeeded', 'failed'])
      .describe('`pending` while an attempt is due, `succeeded` after a 2xx, `failed` once the retries are exhausted or stopped (410, a refused address).'),
    attempt_count: z.number().int().nonnegative(),
    next_attempt_at: Timestamp.nullable().describe('When the next attempt is due; null unless `pending`.'),
    attempts: z.array(WebhookAttemptSchema).describe('Oldest first.'),
  })
  .describe(
    'One webhook event (one `webhook-id`) and every attempt at sending it, after Svix’s message / message-attempt model. ' +
      'Kept as long as its job or batch (RESULT_TTL_SECONDS), longer only while retries are still scheduled.',
  );

export const WebhookDeliveryListSchema = z
  .object({ object: z.literal('list'), data: z.array(WebhookDeliverySchema).describe('Every event of the job or batch, oldest first.') })
  .describe('Not paginated: a job or batch has a few events at most.');

const event = <Type extends string, T extends z.ZodType>(type: Type, data: T, description: string) =>
  z
    .object({
      type: z.literal(type),
      timestamp: Timestamp.describe('When the event happened (RFC 3339, UTC).'),
      data,
    })
    .describe(description);

export const JobStartedEventSchema = event('job.started', JobSchema, 'Sent when a worker starts the job (webhook_events_filter has `start`).');
export const JobCompletedEventSchema = event('job.completed', JobSchema, 'Sent when the job ends: succeeded, failed or canceled.');
export const BatchCompletedEventSchema = event('batch.completed', BatchSchema, 'Sent when every item of the batch has ended, or the batch was canceled.');

export const ProblemSchema = z
  .object({
    type: z.string().meta({ format: 'uri', description: 'https://infer.dev/problems/<code with dashes>' }),
    title: z.string().describe('The HTTP status’s reason phrase, as RFC 9110 names it.'),
    status: z.number().int(),
    detail: z.string().describe('What went wrong, for people. Never a stack trace.'),
    code: z.enum(ERROR_CODES).describe('Stable snake_case code, for programs.'),
  })
  .describe('RFC 9457 problem details with a stable `code`.');

export const HealthSchema = z.object({ status: z.literal('ok') });
export const ModelVersionReadinessSchema = z.object({
  ready: z
    .boolean()
    .describe('True when a live worker has this version ready, or when no worker is live at all (its jobs then queue for the workers’ return); false while it is draining (unloaded or removed: it takes no new job).'),
  workers_ready: z.number().int().nonnegative().describe('Live workers that have this version loaded (a draining version’s: those finishing its queue).'),
});

export const ReadySchema = z
  .object({
    status: z.enum(['ready', 'unavailable']),
    redis: z.enum(['ok', 'unreachable']),
    models: z
      .record(z.string(), z.record(z.string(), ModelVersionReadinessSchema))
      .optional()
      .describe(
        'Only when ready: model name → version → its readiness. Absent when the workers’ registry could not be read. ' +
          'The gateway is ready whatever it says: a version no live worker serves answers 503 `unavailable` at submit.',
      ),
  })
  .describe('`{status, redis}` with 503 while Redis does not answer; `{status, redis, models}` with 200 once it does.');

/** Components, by name. The order here is the order in the document. */
const COMPONENTS = {
  Model: ModelSchema,
  ModelList: ModelListSchema,
  VersionDetail: VersionDetailSchema,
  TensorSpec: TensorSpecSchema,
  Datatype: DatatypeSchema,
  TensorInput: TensorInputSchema,
  NestedArray: NestedArraySchema,
  OutputArray: OutputArraySchema,
  TensorData: TensorDataSchema,
  TensorB64: TensorB64Schema,
  CreateJobBody: CreateJobBodySchema,
  Job: JobSchema,
  JobError: JobErrorSchema,
  JobMetrics: JobMetricsSchema,
  CreateBatchBody: CreateBatchBodySchema,
  BatchItem: BatchItemSchema,
  Batch: BatchSchema,
  BatchList: BatchListSchema,
  BatchResultLine: BatchResultLineSchema,
  BatchItemError: BatchItemErrorSchema,
  WebhookSecret: WebhookSecretSchema,
  WebhookDelivery: WebhookDeliverySchema,
  WebhookAttempt: WebhookAttemptSchema,
  WebhookDeliveryList: WebhookDeliveryListSchema,
  JobStartedEvent: JobStartedEventSchema,
  JobCompletedEvent: JobCompletedEventSchema,
  BatchCompletedEvent: BatchCompletedEventSchema,
  SetRoutingBody: SetRoutingBodySchema,
  CreateRolloutBody: CreateRolloutBodySchema,
  Rollout: RolloutSchema,
  RolloutList: RolloutListSchema,
  ModelEvent: ModelEventSchema,
  ModelEventList: ModelEventListSchema,
  Problem: ProblemSchema,
  Health: HealthSchema,
  Ready: ReadySchema,
  ModelVersionReadiness: ModelVersionReadinessSchema,
} satisfies Record<string, z.ZodType>;

export type SchemaName = keyof typeof COMPONENTS;
export type JsonObject = { [key: string]: unknown };

/** A `$ref` to a component schema, checked against the names above at compile time. */
export const ref = (name: SchemaName): JsonObject => ({ $ref: `#/components/schemas/${name}` });

/** Drop what zod's output carries but a reader does not need: `$schema`, `$id`, `propertyNames: {type: string}`, safe-integer bounds. */
function tidy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(tidy);
  if (typeof value !== 'object' || value === null) return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === '$schema' || k === '$id') continue;
    if (k === 'propertyNames' && JSON.stringify(v) === '{"type":"string"}') continue;
    // zod bounds every integer by the safe-integer range; that says nothing to a reader.
    if ((k === 'maximum' && v === Number.MAX_SAFE_INTEGER) || (k === 'minimum' && v === Number.MIN_SAFE_INTEGER)) continue;
    out[k] = tidy(v);
  }
  return out;
}

/**
 * The contract's `jsonObject()` members (a `z.custom`, which zod cannot put
 * in JSON Schema itself) as what they are, as `z.record()` rendered them
 * before: any JSON object. They are the only custom schemas here.
 */
const openObjects: NonNullable<NonNullable<Parameters<typeof z.toJSONSchema>[1]>['override']> = (ctx) => {
  if (ctx.zodSchema._zod.def.type === 'custom') Object.assign(ctx.jsonSchema, { type: 'object', additionalProperties: {} });
};

/**
 * Query parameters from a zod object schema, one per property. None is marked
 * required: OpenAPI cannot say "required for one media type only".
 */
export function queryParameters(schema: z.ZodObject, descriptions: Record<string, string>): JsonObject[] {
  const json = tidy(z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', override: openObjects })) as { properties: Record<string, JsonObject> };
  return Object.entries(json.properties).map(([name, property]) => ({
    name,
    in: 'query',
    required: false,
    description: descriptions[name] ?? '',
    schema: property,
  }));
}

/** `components.schemas`: every schema above as JSON Schema, referring to each other by `$ref`. */
export function componentSchemas(): Record<SchemaName, JsonObject> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(COMPONENTS)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, {
    target: 'draft-2020-12',
    // Input mode leaves plain objects open (no additionalProperties: false); `.strict()` ones stay closed.
    io: 'input',
    uri: (id) => `#/components/schemas/${id}`,
    unrepresentable: 'any',
    override: openObjects,
  });
  const out = {} as Record<SchemaName, JsonObject>;
  for (const name of Object.keys(COMPONENTS) as SchemaName[]) out[name] = tidy(schemas[name]) as JsonObject;
  return out;
}

// ---------------------------------------------------------------------------
// The document's schemas stay equal to the contract's types.
// ---------------------------------------------------------------------------

type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;

export type SchemaChecks = [
  Assert<Same<z.output<typeof JobSchema>, Job>>,
  Assert<Same<z.output<typeof ModelSchema>, ModelDescription>>,
  Assert<Same<Omit<z.output<typeof ModelSchema>, 'versions_detail' | 'routing' | 'routing_source'>, ModelInfo>>,
  Assert<Same<z.output<typeof VersionDetailSchema>, VersionDetail>>,
  Assert<Same<z.output<typeof ModelListSchema>['data'][number], ModelDescription>>,
  Assert<Same<z.output<typeof SetRoutingBodySchema>, SetRoutingBody>>,
  Assert<Same<z.input<typeof SetRoutingBodySchema>, z.input<typeof SetRoutingBody>>>,
  Assert<Same<z.output<typeof CreateRolloutBodySchema>, CreateRolloutBody>>,
  Assert<Same<z.input<typeof CreateRolloutBodySchema>, z.input<typeof CreateRolloutBody>>>,
  Assert<Same<z.output<typeof RolloutSchema>, Rollout>>,
  Assert<Same<z.output<typeof RolloutListSchema>['data'][number], Rollout>>,
  Assert<Same<z.output<typeof ModelEventSchema>, ModelEvent>>,
  Assert<Same<z.output<typeof ModelEventListSchema>['data'][number], ModelEvent>>,
  Assert<Same<(typeof MODEL_EVENT_TYPES)[number], ModelEventType>>,
  Assert<Same<(typeof ROLLOUT_STATES)[number], RolloutState>>,
  Assert<Same<(typeof VERSION_STATES)[number], VersionState>>,
  Assert<Same<z.output<typeof TensorSpecSchema>, TensorSpec>>,
  Assert<Same<(typeof ERROR_CODES)[number], ErrorCode>>,
  Assert<Same<keyof z.output<typeof CreateJobBodySchema>, keyof CreateJobBody>>,
  Assert<Same<z.output<typeof BatchSchema>, Batch>>,
  Assert<Same<z.output<typeof BatchListSchema>, BatchList>>,
  Assert<Same<z.output<typeof BatchResultLineSchema>, BatchResultLine>>,
  Assert<Same<keyof z.output<typeof CreateBatchBodySchema>, keyof CreateBatchBody>>,
  Assert<Same<keyof z.output<typeof BatchItemSchema>, keyof BatchItem>>,
  Assert<Same<z.output<typeof JobErrorSchema>, JobError>>,
  Assert<Same<z.output<typeof BatchItemErrorSchema>, JobError>>,
  Assert<Same<z.output<typeof WebhookDeliverySchema>, WebhookDelivery>>,
  Assert<Same<z.output<typeof WebhookAttemptSchema>, WebhookAttempt>>,
  Assert<Same<z.output<typeof WebhookDeliverySchema>['subject'], WebhookSubject>>,
  Assert<Same<z.output<typeof WebhookDeliveryListSchema>['data'][number], WebhookDelivery>>,
];
