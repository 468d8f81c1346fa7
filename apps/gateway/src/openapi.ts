/**
 * The OpenAPI 3.1 document of the public HTTP contract (written out in
 * docs/api.md), served at
 * `GET /openapi.json`. Built once per process from:
 *   - openapi/schemas.ts   — component schemas, from zod (`z.toJSONSchema`),
 *                            request bodies derived from the contract's own
 *                            zod schemas;
 *   - openapi/responses.ts — problem+json responses, headers, parameters;
 *   - openapi/paths.ts     — every route and the webhook events.
 *
 * Where the contract leaves a detail open, the choice made is written into
 * the document itself (`x-contract-choices` below, and the descriptions where
 * they apply), so that this document stays the machine-readable truth.
 */
import { webhookParameters, paths, webhooks } from './openapi/paths.js';
import { sharedHeaders, sharedParameters, sharedResponses } from './openapi/responses.js';
import { componentSchemas, type JsonObject } from './openapi/schemas.js';

export { ERROR_CODES } from './openapi/schemas.js';

/** Choices made where the contract leaves a detail open, each a sentence. */
export const CONTRACT_CHOICES: readonly string[] = [
  '400 errors for a body of the wrong shape use code `invalid_input`; malformed JSON uses `invalid_json`.',
  'Unknown top-level fields in a request body are rejected with 400 `invalid_input`.',
  '`POST /v1/jobs` reads the body as JSON whatever the Content-Type, so `curl -d` works without a header.',
  '`version` in a request may be a string ("2") or an integer (2); responses always carry it as a string.',
  'Job and batch `urls` are relative paths on the gateway (`/v1/jobs/{id}`).',
  'A response to a request with `Prefer: wait` carries `Preference-Applied: wait=N` (RFC 7240).',
  'A Job also carries `webhook` and `webhook_events_filter` (empty without a webhook).',
  '`GET /v1/models` answers `{object: "list", data: [Model]}`, like the other list endpoints.',
  'The rate limit is `RATE_LIMIT_PER_SECOND` requests per API key in each epoch second, one budget for all gateway replicas: each gateway decides locally and syncs the shared counts through Redis about every 50 ms, so a burst spread over several replicas can briefly pass the limit.',
  'The limits behind 503 `queue_full` (MAX_QUEUE_DEPTH) and 429 `quota_exceeded` (TENANT_MAX_QUEUED) are over every model version’s queue and hold exactly across gateways: each queue holds an allowance of each limit, the allowances adding up to at most the limit, and its enqueue keeps within it. An envelope past its queue’s allowance (or a queue’s first) moves unused allowance to its queue under a lock all gateways share, so at the limits submits take turns; one that cannot take the lock within 5 s answers 503 `unavailable` (`Retry-After: 1`).',
  'Job ids are 30 characters: the 8-character tag of the job’s queue (base32 of a hash of model and version, so a job’s keys are found from its id), then 128 random bits as 22 base64url characters. Batch ids are UUID v4 (122 random bits).',
  '`POST /v1/jobs` takes `Cancel-After` (Replicate’s header): a duration of `<number><unit>` parts (`ms`, `s`, `m`, `h`; `30s`, `5m`, `1h30m`, `250ms`), more than 0 and at most 24 h, else 400 `invalid_input`. A job still queued at its deadline ends `canceled` with `error.code` `deadline_exceeded` and never runs; one a worker has taken finishes.',
  '`POST /v1/jobs` and `POST /v1/batches` answer 503 `unavailable` (`Retry-After: 5`) for a model version that live workers exist for but none serves; with no live worker at all the work is queued for their return.',
  'Redis refusing writes because it is full (maxmemory under `noeviction`) answers 503 `unavailable` with `Retry-After: 5`; Redis not answering, with `Retry-After: 2`.',
  '`TENANT_MAX_QUEUED` (off by default) caps a tenant’s queued instances: past it `POST /v1/jobs` answers 429 `quota_exceeded` with `Retry-After: 5`. `TENANT_MAX_OPEN_BATCHES` caps its open batches: `POST /v1/batches` answers 429 `quota_exceeded` with `Retry-After: 30`.',
  'An idempotent replay that arrives while the first request with its key is still being enqueued waits for it up to 2 s, then answers 409 `conflict`. A replay answers with `Idempotent-Replayed: true`.',
  'A Job’s `error.code` is one of `inference_failed`, `invalid_input`, `worker_lost`, `deadline_exceeded`, `canceled`; a batch item’s one of `invalid_json`, `invalid_input`, `inference_failed`, `worker_lost`, `inputs_lost`, `retries_exhausted`, `lost`, `internal_error` (a canceled item has no error). Both are open sets in the schema: a client should treat an unknown code as a failure.',
  '`GET /readyz` also answers `models`: per model and version, `{ready, workers_ready}`; a version is ready when a live worker serves it, or when no worker is live at all, and never while it is draining (unloaded or removed: it takes no new job). It never makes the gateway unready.',
  'Webhook deliveries follow Svix’s message / message-attempt model: `GET /v1/jobs/{id}/webhook_deliveries` and `GET /v1/batches/{id}/webhook_deliveries` list a subject’s events (not paginated), `GET /v1/webhook_deliveries/{event_id}` reads one by its `webhook-id`; a resend is one manual attempt (202), refused with 409 `conflict` while the delivery is still `pending`.',
  'Webhook URLs whose host is `localhost` or a single-label name are refused too (422 `webhook_url_not_allowed`).',
  'Unknown routes answer 404 problem+json with code `not_found`.',
  'A path id or name that is not valid percent-encoded UTF-8 (`%zz`, `%ff`) answers 400 `invalid_input`, on every route.',
  'An unknown Content-Encoding answers 415 `unsupported_media_type` on every route that reads a body; bytes that do not decode answer 400 `invalid_json`.',
  'The model lifecycle routes (`PUT /v1/models/{name}/routing`, `POST /v1/models/{name}/versions/{version}/load` and `…/unload`, the rollouts and the events) take an admin key from ADMIN_API_KEYS as `Authorization: Bearer <key>` (the `adminAuth` scheme), never a tenant’s API key: no key or an unknown one is 401 `unauthorized`; a tenant’s API key, or any key on a gateway with no ADMIN_API_KEYS, is 403 `forbidden`. They are not rate limited. Each change is recorded in the model’s events with the admin key’s name as its actor.',
  'Routing weights are integers from 0 to 100 summing to 100, keyed by version; a weight above 0 may only name a `ready` version. Anything else in `PUT /v1/models/{name}/routing` is 422 `invalid_routing`; `{"weights": null}` returns to the default routing, in which the highest ready version takes 100 (with none ready, the highest that is loading).',
  'While a rollout of a model runs, setting its routing by hand is 409 `conflict` (cancel the rollout first), and so is starting another rollout of it.',
  'A rollout’s `steps` are 1 to 20 percentages, integers from 1 to 100, that rise strictly and end at 100; otherwise 422 `invalid_input`. Its version must be `ready` and not already take 100, else 422 `invalid_routing`. A rollout is created with 201 and the Rollout (no Location header); loading and unloading a version answer 202 with the Model, as the fleet follows within seconds.',
  '`GET /v1/models/{name}/events` is newest first and paginated by `limit` (1 to 100, default 20) and `after` (an event id: the events older than it); an `after` that names no event of the model is 400 `invalid_input`, as is any other query parameter. `has_more` says whether older events follow.',
  '`version_unloaded` events come twice per unload: `state: "draining"` when the version is marked (an admin’s unload, or its folder removed) and `state: "unloaded"` once a worker has let it go, its queues empty. `version_loaded` events likewise: `state: "loading"` when an admin asks for the load (or takes back an unload) and `state: "ready"` when the first worker has it.',
  'A Model’s `default_version` is the version with the largest routing weight (ties to the higher version); its tensors describe the model. `versions` lists the versions a job may pin now: `ready` or `loading`, loaded on this gateway; pinning one that is draining, failed or missing is 404 `version_not_found`.',
  'A model none of whose versions loaded on this gateway is not listed by `GET /v1/models`, and `GET /v1/models/{name}` answers 404 `model_not_found` for it.',
  'A job or batch that names no version, for a model none of whose versions can take jobs now (all draining or failed), answers 503 `unavailable` with `Retry-After: 5`.',
  'A job routed to a version whose queue its workers have just closed (it is being unloaded, and this gateway’s view of the routing is over about 3 s stale) answers 503 `unavailable` with `Retry-After: 1`; the retry is routed afresh.',
];

export type OpenApiDocument = JsonObject & { openapi: string; paths: JsonObject; webhooks: JsonObject; components: JsonObject };

/** A fresh document each call (the parts are module constants; callers may mutate what they get). */
export function buildOpenApi(): OpenApiDocument {
  return structuredClone({
    openapi: '3.1.1',
    jsonSchemaDialect: 'https://spec.openapis.org/oas/3.1/dialect/base',
    info: {
      title: 'infer: queue-backed async inference',
      version: '0.1.0',
      summary: 'Submit inference jobs and bulk batches to ONNX models; poll, wait or get a signed webhook.',
      description:
        'Every `/v1` route needs `Authorization: Bearer <api key>`. A key belongs to one tenant; a tenant sees only its own ' +
        'jobs and batches: another tenant’s id answers 404, exactly as an id that never existed. Errors are RFC 9457 ' +
        '`application/problem+json` with a stable snake_case `code`; never a stack trace. Times are RFC 3339 UTC strings, ' +
        'field names snake_case.\n\nTensors follow the Open Inference Protocol (KServe v2) datatype names; a job carries ' +
        'ONE instance (batch dimension left out) and the workers micro-batch instances of one model version together.\n\n' +
        'The model lifecycle routes (routing, loading and unloading versions, rollouts, the events log) take an admin key ' +
        '(ADMIN_API_KEYS) instead: the `adminAuth` scheme.',
      'x-contract-choices': CONTRACT_CHOICES,
    },
    servers: [{ url: '/', description: 'The gateway serving this document.' }],
    security: [{ bearerAuth: [] }],
    tags: [
      { name: 'models', description: 'The models in the model repository.' },
      { name: 'model lifecycle', description: 'Routing, loading and unloading versions, rollouts and the events log. Admin keys only.' },
      { name: 'jobs', description: 'One instance each; queued, micro-batched, run.' },
      { name: 'batches', description: 'Bulk offline scoring; never starves interactive jobs.' },
      { name: 'webhooks', description: 'Signed event deliveries (Standard Webhooks).' },
      { name: 'operations', description: 'Health, readiness, metrics, this document. No auth.' },
    ],
    paths,
    webhooks,
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API key from API_KEYS (`tenant:key,…`). Without API_KEYS and outside production the key is `dev-key`.',
        },
        adminAuth: {
          type: 'http',
          scheme: 'bearer',
          description:
            'An admin key from ADMIN_API_KEYS (`name:key,…`; the name is the actor recorded in the model events). A tenant’s API key is ' +
            '403 `forbidden`; with no ADMIN_API_KEYS configured every admin route answers 403.',
        },
      },
      schemas: componentSchemas(),
      responses: sharedResponses,
      headers: sharedHeaders,
      parameters: { ...sharedParameters, ...webhookParameters },
    },
  });
}
