import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { expect } from 'chai';
import type { z } from 'zod';
import { buildOpenApi, type OpenApiDocument } from '../apps/gateway/src/openapi.js';
import {
  BATCH_ITEM_ERROR_CODES,
  BatchListSchema,
  BatchSchema,
  ERROR_CODES,
  EXAMPLE_JOB_ID,
  JOB_ERROR_CODES,
  JobSchema,
  MODEL_EVENT_TYPES,
  ModelEventListSchema,
  ModelListSchema,
  ModelSchema,
  ProblemSchema,
  ReadySchema,
  RolloutListSchema,
  RolloutSchema,
  WebhookDeliveryListSchema,
  type JsonObject,
  type SchemaName,
} from '../apps/gateway/src/openapi/schemas.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { REPO_ROOT, SHIPPED_MODELS, TEST_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'] as const;

/** The model lifecycle's admin routes (routes/model-admin.ts): an admin key (ADMIN_API_KEYS), no rate limit. */
const ADMIN_ROUTE_LIST = [
  'PUT /v1/models/{name}/routing',
  'POST /v1/models/{name}/versions/{version}/load',
  'POST /v1/models/{name}/versions/{version}/unload',
  'POST /v1/models/{name}/rollouts',
  'GET /v1/models/{name}/rollouts',
  'GET /v1/models/{name}/rollouts/{id}',
  'POST /v1/models/{name}/rollouts/{id}/cancel',
  'GET /v1/models/{name}/events',
];

/**
 * Routes the gateway has served from the start (and the model lifecycle's), as `METHOD /path` with
 * OpenAPI's `{param}` syntax: a floor, so neither the document nor
 * docs/api.md can lose one unnoticed.
 */
const API_ROUTES = [
  'GET /v1/models',
  'GET /v1/models/{name}',
  'POST /v1/jobs',
  'GET /v1/jobs/{id}',
  'POST /v1/jobs/{id}/cancel',
  'POST /v1/batches',
  'GET /v1/batches',
  'GET /v1/batches/{id}',
  'GET /v1/batches/{id}/results',
  'POST /v1/batches/{id}/cancel',
  'GET /v1/webhooks/secret',
  'GET /v1/jobs/{id}/webhook_deliveries',
  'GET /v1/batches/{id}/webhook_deliveries',
  'GET /v1/webhook_deliveries/{event_id}',
  'POST /v1/webhook_deliveries/{event_id}/resend',
  'GET /healthz',
  'GET /readyz',
  'GET /metrics',
  'GET /openapi.json',
  ...ADMIN_ROUTE_LIST,
];
const ADMIN_ROUTES: ReadonlySet<string> = new Set(ADMIN_ROUTE_LIST);

/**
 * The problem codes each operation can answer, per status, read off the code
 * (routes/, jobs/, batches/, http/): a code the document lists that the route
 * cannot answer, or one it can that the document leaves out, fails the test.
 * 401 `unauthorized`, 429 `rate_limited` and 500 `internal_error` are every
 * tenant /v1 route's and checked separately, unless a route's 429 says more.
 * The admin routes answer 401 `unauthorized` and 500 too, checked separately,
 * and 403 `forbidden` (listed here); never 429 (they are not rate limited).
 */
const PROBLEM_CODES: Record<string, Record<string, string[]>> = {
  'GET /v1/models': {},
  'GET /v1/models/{name}': { '400': ['invalid_input'], '404': ['model_not_found'] },
  'POST /v1/jobs': {
    '400': ['invalid_input', 'invalid_json'],
    '404': ['model_not_found', 'version_not_found'],
    '409': ['conflict'],
    '413': ['payload_too_large'],
    '415': ['unsupported_media_type'],
    '422': ['invalid_input', 'webhook_url_not_allowed'],
    '429': ['rate_limited', 'quota_exceeded'],
    '503': ['queue_full', 'unavailable'],
  },
  'GET /v1/jobs/{id}': { '400': ['invalid_input'], '404': ['job_not_found'], '503': ['unavailable'] },
  'POST /v1/jobs/{id}/cancel': { '400': ['invalid_input'], '404': ['job_not_found'], '409': ['conflict'], '503': ['unavailable'] },
  'POST /v1/batches': {
    '400': ['invalid_input', 'invalid_json'],
    '404': ['model_not_found', 'version_not_found'],
    '408': ['request_timeout'],
    '413': ['payload_too_large'],
    '415': ['unsupported_media_type'],
    '422': ['invalid_input', 'webhook_url_not_allowed'],
    '429': ['rate_limited', 'quota_exceeded'],
    '503': ['unavailable'],
  },
  'GET /v1/batches': { '400': ['invalid_input'], '503': ['unavailable'] },
  'GET /v1/batches/{id}': { '400': ['invalid_input'], '404': ['batch_not_found'], '503': ['unavailable'] },
  'GET /v1/batches/{id}/results': { '400': ['invalid_input'], '404': ['batch_not_found'], '409': ['conflict'], '503': ['unavailable'] },
  'POST /v1/batches/{id}/cancel': { '400': ['invalid_input'], '404': ['batch_not_found'], '409': ['conflict'], '503': ['unavailable'] },
  'GET /v1/webhooks/secret': { '503': ['unavailable'] },
  'GET /v1/jobs/{id}/webhook_deliveries': { '400': ['invalid_input'], '404': ['job_not_found'], '503': ['unavailable'] },
  'GET /v1/batches/{id}/webhook_deliveries': { '400': ['invalid_input'], '404': ['batch_not_found'], '503': ['unavailable'] },
  'GET /v1/webhook_deliveries/{event_id}': { '400': ['invalid_input'], '404': ['not_found'], '503': ['unavailable'] },
  'POST /v1/webhook_deliveries/{event_id}/resend': { '400': ['invalid_input'], '404': ['not_found'], '409': ['conflict'], '503': ['unavailable'] },
  // routes/model-admin.ts, behind http/admin-auth.ts; bodies through http/json-body.ts (64 KiB).
  'PUT /v1/models/{name}/routing': {
    '400': ['invalid_input', 'invalid_json'],
    '403': ['forbidden'],
    '404': ['model_not_found'],
    '409': ['conflict'],
    '413': ['payload_too_large'],
    '415': ['unsupported_media_type'],
    '422': ['invalid_routing'],
    '503': ['unavailable'],
  },
  'POST /v1/models/{name}/versions/{version}/load': {
    '400': ['invalid_input'],
    '403': ['forbidden'],
    '404': ['version_not_found', 'model_not_found'],
    '422': ['invalid_input'],
    '503': ['unavailable'],
  },
  'POST /v1/models/{name}/versions/{version}/unload': {
    '400': ['invalid_input'],
    '403': ['forbidden'],
    '404': ['model_not_found', 'version_not_found'],
    '409': ['conflict'],
    '503': ['unavailable'],
  },
  'POST /v1/models/{name}/rollouts': {
    '400': ['invalid_input', 'invalid_json'],
    '403': ['forbidden'],
    '404': ['model_not_found'],
    '409': ['conflict'],
    '413': ['payload_too_large'],
    '415': ['unsupported_media_type'],
    '422': ['invalid_input', 'invalid_routing'],
    '503': ['unavailable'],
  },
  'GET /v1/models/{name}/rollouts': { '400': ['invalid_input'], '403': ['forbidden'], '404': ['model_not_found'], '503': ['unavailable'] },
  'GET /v1/models/{name}/rollouts/{id}': { '400': ['invalid_input'], '403': ['forbidden'], '404': ['model_not_found', 'not_found'], '503': ['unavailable'] },
  'POST /v1/models/{name}/rollouts/{id}/cancel': {
    '400': ['invalid_input'],
    '403': ['forbidden'],
    '404': ['model_not_found', 'not_found'],
    '409': ['conflict'],
    '503': ['unavailable'],
  },
  'GET /v1/models/{name}/events': { '400': ['invalid_input'], '403': ['forbidden'], '404': ['model_not_found'], '503': ['unavailable'] },
};

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function operationsOf(doc: OpenApiDocument): Array<{ route: string; op: JsonObject }> {
  const out: Array<{ route: string; op: JsonObject }> = [];
  for (const [p, item] of Object.entries(doc.paths)) {
    if (!isObject(item)) continue;
    for (const m of METHODS) {
      const op = item[m];
      if (isObject(op)) out.push({ route: `${m.toUpperCase()} ${p}`, op });
    }
  }
  return out;
}

/** Resolve a local JSON pointer (`#/components/schemas/Job`); undefined when it leads nowhere. */
function resolvePointer(doc: unknown, ref: string): unknown {
  let node: unknown = doc;
  for (const raw of ref.slice(2).split('/')) {
    const token = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    if (!isObject(node) || !(token in node)) return undefined;
    node = node[token];
  }
  return node;
}

function collectRefs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const v of node) collectRefs(v, out);
  else if (isObject(node)) {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else collectRefs(v, out);
    }
  }
  return out;
}

/** Routes written in docs/api.md as `` `GET /path` `` (query strings dropped, `{id}` kept). */
function routesInApiDoc(): string[] {
  const text = readFileSync(path.join(REPO_ROOT, 'docs', 'api.md'), 'utf8');
  const found = new Set<string>();
  for (const m of text.matchAll(/`(GET|POST|PUT|PATCH|DELETE) (\/[^`?\s]*)/g)) found.add(`${m[1]} ${m[2]}`);
  return [...found];
}

/** The `code` enum of a problem+json response, following a `$ref` to a shared response. */
function problemCodes(doc: OpenApiDocument, response: JsonObject): string[] | undefined {
  const resolved = (typeof response.$ref === 'string' ? resolvePointer(doc, response.$ref) : response) as JsonObject;
  const media = (resolved.content as JsonObject | undefined)?.['application/problem+json'] as
    | { schema: { allOf: Array<{ properties?: { code?: { enum: string[] } } }> } }
    | undefined;
  return media?.schema.allOf[1]?.properties?.code?.enum;
}

/** Every `.ts` file under `dir`, recursively. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

type ApiDocument = Exclude<Parameters<typeof SwaggerParser.validate>[0], string>;

describe('OpenAPI document', () => {
  const doc = buildOpenApi();
  const schemas = (doc.components.schemas ?? {}) as Record<SchemaName, JsonObject>;

  it('is OpenAPI 3.1 in shape', () => {
    expect(doc.openapi).to.match(/^3\.1\.\d+$/);
    expect(doc).to.have.nested.property('info.title').that.is.a('string');
    expect(doc).to.have.nested.property('info.version').that.is.a('string');
    expect(doc.components).to.have.nested.property('securitySchemes.bearerAuth').that.deep.includes({ type: 'http', scheme: 'bearer' });
    expect(doc.security).to.deep.equal([{ bearerAuth: [] }]);
  });

  it('gives every path at least one operation, each with a unique operationId and responses', () => {
    const ids = new Set<string>();
    for (const [p, item] of Object.entries(doc.paths)) {
      expect(isObject(item) && METHODS.some((m) => m in item), `${p} has no operation`).to.equal(true);
    }
    for (const { route, op } of operationsOf(doc)) {
      expect(op.operationId, `${route} operationId`).to.be.a('string');
      expect(ids.has(op.operationId as string), `${route}: duplicate operationId`).to.equal(false);
      ids.add(op.operationId as string);
      expect(isObject(op.responses) && Object.keys(op.responses).length > 0, `${route} has no responses`).to.equal(true);
    }
  });

  it('resolves every $ref within the document', () => {
    const refs = collectRefs(doc);
    expect(refs.length).to.be.greaterThan(20);
    for (const ref of refs) {
      expect(ref.startsWith('#/'), `${ref} is not local`).to.equal(true);
      expect(resolvePointer(doc, ref), `${ref} resolves to nothing`).to.not.equal(undefined);
    }
  });

  it('passes swagger-parser validation against the OpenAPI 3.1 schema', async () => {
    // validate() dereferences in place; give it a copy.
    await SwaggerParser.validate(structuredClone(doc) as ApiDocument);
  });

  it('lists the routes the gateway has always served', () => {
    const documented = new Set(operationsOf(doc).map((o) => o.route));
    const written = new Set(routesInApiDoc());
    for (const route of API_ROUTES) {
      expect(documented.has(route), `${route} is missing from the document`).to.equal(true);
      expect(written.has(route), `${route} is missing from docs/api.md`).to.equal(true);
    }
  });

  it('lists every route docs/api.md names', () => {
    const routes = routesInApiDoc();
    const documented = new Set(operationsOf(doc).map((o) => o.route));
    expect(routes.length).to.be.greaterThan(10);
    expect(routes.filter((r) => !documented.has(r)), 'routes of docs/api.md missing from the document').to.deep.equal([]);
  });

  it('has every route it lists written in docs/api.md', () => {
    const written = new Set(routesInApiDoc());
    const unwritten = operationsOf(doc).map((o) => o.route).filter((r) => !written.has(r));
    expect(unwritten, 'routes of the document missing from docs/api.md').to.deep.equal([]);
  });

  it('secures every /v1 operation with the bearer scheme and leaves the operational routes open', () => {
    for (const { route, op } of operationsOf(doc)) {
      const path_ = route.split(' ')[1]!;
      if (ADMIN_ROUTES.has(route)) continue;
      if (route === 'GET /v1/models' || route === 'GET /v1/models/{name}') {
        // Reading models: a tenant's key or an admin's.
        expect(op.security, route).to.deep.equal([{ bearerAuth: [] }, { adminAuth: [] }]);
      } else if (path_.startsWith('/v1/')) {
        expect(op.security, route).to.equal(undefined); // inherits the document's bearerAuth
        expect(op.responses, route).to.include.keys('401', '429');
      } else {
        expect(op.security, route).to.deep.equal([]);
      }
    }
  });

  it('secures the model lifecycle routes with the admin scheme alone: 401, 403, never 429', () => {
    const schemes = doc.components.securitySchemes as Record<string, JsonObject>;
    expect(schemes.adminAuth).to.deep.include({ type: 'http', scheme: 'bearer' });
    expect(schemes.adminAuth!.description).to.match(/ADMIN_API_KEYS/);
    expect(schemes.adminAuth!.description).to.not.equal(schemes.bearerAuth!.description);
    const admin = operationsOf(doc).filter((o) => JSON.stringify(o.op.security ?? []) === JSON.stringify([{ adminAuth: [] }]));
    expect(admin.map((o) => o.route)).to.have.members([...ADMIN_ROUTES]);
    for (const { route, op } of admin) {
      expect(op.security, route).to.deep.equal([{ adminAuth: [] }]);
      expect(op.responses, route).to.include.keys('401', '403', '500');
      expect(op.responses, route).to.not.have.key('429');
      expect(op.tags, route).to.deep.equal(['model lifecycle']);
    }
  });

  it('answers errors as problem+json with their codes', () => {
    const create = operationsOf(doc).find((o) => o.route === 'POST /v1/jobs')!.op;
    const responses = create.responses as Record<string, JsonObject>;
    for (const status of ['400', '401', '404', '413', '422', '429', '503']) {
      expect(responses[status], status).to.have.nested.property('content.application/problem+json.schema');
    }
    const codes = (s: string) =>
      ((responses[s]!.content as JsonObject)['application/problem+json'] as { schema: { allOf: Array<{ properties?: { code?: { enum: string[] } } }> } }).schema
        .allOf[1]!.properties!.code!.enum;
    expect(codes('400')).to.have.members(['invalid_input', 'invalid_json']);
    expect(codes('422')).to.have.members(['invalid_input', 'webhook_url_not_allowed']);
    expect(codes('503')).to.have.members(['queue_full', 'unavailable']);
    expect(responses['503']).to.have.nested.property('headers.Retry-After');
    expect(responses['429']).to.have.nested.property('headers.Retry-After');
  });

  it('gives every 401 its WWW-Authenticate challenge, as the gateway sends it', () => {
    const unchallenged = operationsOf(doc)
      .filter(({ op }) => (op.responses as Record<string, JsonObject>)['401'])
      .filter(({ op }) => !((op.responses as Record<string, JsonObject>)['401']!.headers as JsonObject | undefined)?.['WWW-Authenticate'])
      .map(({ route }) => route);
    expect(unchallenged).to.deep.equal([]);
    expect(operationsOf(doc).filter(({ op }) => (op.responses as Record<string, JsonObject>)['401']).length).to.be.greaterThan(10);
  });

  it('lists, per operation and status, exactly the problem codes the code can answer there', () => {
    const ops = operationsOf(doc).filter((o) => o.route.includes(' /v1/'));
    expect(ops.map((o) => o.route)).to.have.members(Object.keys(PROBLEM_CODES));
    for (const { route, op } of ops) {
      const listed: Record<string, string[]> = {};
      for (const [status, response] of Object.entries(op.responses as Record<string, JsonObject>)) {
        const codes = problemCodes(doc, response);
        if (codes) listed[status] = [...codes].sort();
      }
      expect(listed['401'], route).to.deep.equal(['unauthorized']);
      expect(listed['500'], route).to.deep.equal(['internal_error']);
      const expected: Record<string, string[]> = { ...(ADMIN_ROUTES.has(route) ? {} : { '429': ['rate_limited'] }), ...PROBLEM_CODES[route] };
      delete listed['401'];
      delete listed['500'];
      for (const codes of Object.values(expected)) codes.sort();
      expect(listed, route).to.deep.equal(expected);
    }
    // Every listed code is one of the contract's; `inference_failed` is never an HTTP answer.
    for (const { route, op } of operationsOf(doc)) {
      for (const response of Object.values(op.responses as Record<string, JsonObject>)) {
        for (const code of problemCodes(doc, response) ?? []) {
          expect(ERROR_CODES as readonly string[], route).to.include(code);
          expect(code, route).to.not.equal('inference_failed');
        }
      }
    }
  });

  it('lists every code a job or a batch item can fail with', () => {
    // Each literal JobError the workers, the gateway and the batch store write, and the gateway's own item failures.
    const dirs = ['apps/worker/src', 'apps/gateway/src/jobs', 'apps/gateway/src/batches', 'packages/batch-store/src', 'packages/job-store/src', 'packages/contract/src'];
    const written = new Set<string>();
    for (const file of dirs.flatMap((d) => sourceFiles(path.join(REPO_ROOT, d)))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/\{ ?code: '([a-z_]+)', message\b/g)) written.add(m[1]!);
      for (const m of text.matchAll(/this\.fail\([^,]+, [^,]+, '([a-z_]+)'/g)) written.add(m[1]!);
    }
    expect([...written]).to.include.members(['canceled', 'deadline_exceeded', 'invalid_json', 'lost']);
    const documented = new Set<string>([...JOB_ERROR_CODES, ...BATCH_ITEM_ERROR_CODES]);
    expect([...written].filter((c) => !documented.has(c)), 'error codes written but not in the document').to.deep.equal([]);
    expect(schemas.JobError).to.have.nested.property('properties.code.anyOf[0].enum').that.has.members([...JOB_ERROR_CODES]);
    expect(schemas.BatchItemError).to.have.nested.property('properties.code.anyOf[0].enum').that.has.members([...BATCH_ITEM_ERROR_CODES]);
    expect(schemas.BatchResultLine).to.have.nested.property('properties.error.anyOf[0].$ref', '#/components/schemas/BatchItemError');
  });

  it('documents the Prefer: wait, Idempotency-Key and Cancel-After headers and the Preference-Applied answer', () => {
    const params = doc.components.parameters as Record<string, JsonObject>;
    expect(params.PreferWait).to.include({ name: 'Prefer', in: 'header' });
    expect(params.IdempotencyKey).to.include({ name: 'Idempotency-Key', in: 'header' });
    expect(params.CancelAfter).to.include({ name: 'Cancel-After', in: 'header' });
    const pattern = new RegExp((params.CancelAfter!.schema as { pattern: string }).pattern);
    for (const ok of ['30s', '5m', '1h30m', '250ms', '1.5s']) expect(pattern.test(ok), ok).to.equal(true);
    for (const bad of ['30', '5 m', '1d', '-1s']) expect(pattern.test(bad), bad).to.equal(false);
    const create = operationsOf(doc).find((o) => o.route === 'POST /v1/jobs')!.op;
    expect((create.parameters as Array<{ $ref: string }>).map((p) => p.$ref)).to.include('#/components/parameters/CancelAfter');
    expect(create).to.have.nested.property('responses.200.headers.Preference-Applied');
    expect(create).to.have.nested.property('responses.200.headers.Idempotent-Replayed');
    expect(create).to.have.nested.property('responses.202.headers.Location');
  });

  it('gives job ids as the gateway makes them: 30 characters, queue tag then 22 base64url', () => {
    expect(EXAMPLE_JOB_ID).to.have.length(30);
    expect(schemas.Job).to.have.nested.property('properties.id.pattern');
    const pattern = new RegExp((schemas.Job.properties as Record<string, { pattern: string }>).id!.pattern);
    expect(pattern.test(EXAMPLE_JOB_ID)).to.equal(true);
    expect(pattern.test('6f1c2b7e-9a4d-4e8b-b1f2-3c4d5e6f7a8b')).to.equal(false);
    const text = JSON.stringify(doc);
    // No job example left with a UUID: every `/v1/jobs/<id>` in the document is a 30-character id.
    for (const m of text.matchAll(/\/v1\/jobs\/([^/"{}]+)/g)) expect(m[1], m[0]).to.equal(EXAMPLE_JOB_ID);
  });

  it('describes the webhook delivery routes and the readiness of model versions', () => {
    expect(schemas.WebhookDelivery).to.have.nested.property('properties.object.const', 'webhook_delivery');
    expect(schemas.WebhookDelivery).to.have.nested.property('properties.attempts.items.$ref', '#/components/schemas/WebhookAttempt');
    const ops = operationsOf(doc);
    const op = (route: string) => ops.find((o) => o.route === route)!.op;
    expect(op('GET /v1/jobs/{id}/webhook_deliveries')).to.have.nested.property('responses.200.content.application/json.schema.$ref', '#/components/schemas/WebhookDeliveryList');
    expect(op('GET /v1/webhook_deliveries/{event_id}')).to.have.nested.property('responses.200.content.application/json.schema.$ref', '#/components/schemas/WebhookDelivery');
    expect(op('POST /v1/webhook_deliveries/{event_id}/resend')).to.have.nested.property('responses.202.content.application/json.schema.$ref', '#/components/schemas/WebhookDelivery');
    expect(schemas.Ready).to.have.nested.property('properties.models.additionalProperties.additionalProperties.$ref', '#/components/schemas/ModelVersionReadiness');
    expect(schemas.Ready.required).to.have.members(['status', 'redis']);
  });

  it('describes the NDJSON batch upload with its query parameters and the NDJSON results', () => {
    const ops = operationsOf(doc);
    const create = ops.find((o) => o.route === 'POST /v1/batches')!.op;
    expect(create).to.have.nested.property('requestBody.content').that.has.keys('application/json', 'application/x-ndjson');
    const query = (create.parameters as Array<{ name: string; in: string }>).filter((p) => p.in === 'query').map((p) => p.name);
    expect(query).to.have.members(['model', 'version', 'webhook']);
    const results = ops.find((o) => o.route === 'GET /v1/batches/{id}/results')!.op;
    expect(results).to.have.nested.property('responses.200.content').that.has.key('application/x-ndjson');
    expect(results).to.have.nested.property('responses.409');
  });

  it('has a webhooks entry per event, with the Standard Webhooks headers', () => {
    expect(doc.webhooks).to.have.keys('job.started', 'job.completed', 'batch.completed');
    const params = doc.components.parameters as Record<string, JsonObject>;
    for (const [event, item] of Object.entries(doc.webhooks)) {
      const post = (item as { post: { parameters: Array<{ $ref: string }>; requestBody: JsonObject } }).post;
      const names = post.parameters.map((p) => (resolvePointer(doc, p.$ref) as { name: string }).name);
      expect(names, event).to.have.members(['webhook-id', 'webhook-timestamp', 'webhook-signature']);
      expect(post.requestBody, event).to.have.nested.property('content.application/json.schema.$ref');
    }
    expect(params.WebhookSignatureHeader).to.have.nested.property('schema.pattern');
    expect(schemas.JobCompletedEvent).to.have.nested.property('properties.type.const', 'job.completed');
    expect(schemas.BatchCompletedEvent).to.have.nested.property('properties.data.$ref', '#/components/schemas/Batch');
  });

  it('takes the request body schema from the contract’s zod schema, closed to unknown fields', () => {
    expect(schemas.CreateJobBody).to.include({ type: 'object', additionalProperties: false });
    expect(schemas.CreateJobBody.required).to.have.members(['model', 'input']);
    expect(schemas.CreateJobBody).to.have.nested.property('properties.version.anyOf').with.length(2);
    expect(schemas.CreateJobBody).to.have.nested.property('properties.input.additionalProperties.$ref', '#/components/schemas/TensorInput');
    expect(schemas.TensorInput.anyOf).to.have.length(3);
  });

  it('records the contract choices it makes (x-contract-choices)', () => {
    expect(doc).to.have.nested.property('info.x-contract-choices').that.is.an('array').with.length.greaterThan(10);
  });
});

// ---------------------------------------------------------------------------
// Live answers against the document

/** The body's keys are exactly the documented properties: nothing undocumented, nothing missing. */
function expectDocumentedKeys(body: unknown, schema: JsonObject, what: string): void {
  expect(Object.keys(body as object).sort(), what).to.deep.equal(Object.keys(schema.properties as object).sort());
}

/** Every key of the body is documented, and every required one is there (for schemas with optional properties). */
function expectKeysWithin(body: unknown, schema: JsonObject, what: string): void {
  const keys = Object.keys(body as object);
  expect(keys, what).to.include.members((schema.required as string[] | undefined) ?? []);
  expect(keys.filter((k) => !(k in (schema.properties as object))), `${what}: undocumented keys`).to.deep.equal([]);
}

function parse<T extends z.ZodType>(schema: T, body: unknown, what: string): z.output<T> {
  const result = schema.safeParse(body);
  expect(result.success, `${what}: ${result.error?.message}`).to.equal(true);
  return result.data!;
}

const liveDoc = buildOpenApi();
const liveSchemas = liveDoc.components.schemas as Record<SchemaName, JsonObject>;

/** The document's response of an operation (`PUT /v1/models/{name}/routing`) for a status; fails when it has none. */
function documentedResponse(route: string, status: number): JsonObject {
  const [method, template] = route.split(' ') as [string, string];
  const op = (liveDoc.paths[template] as Record<string, JsonObject> | undefined)?.[method.toLowerCase()];
  expect(op, `${route} is not in the document`).to.not.equal(undefined);
  const response = (op!.responses as Record<string, JsonObject>)[String(status)];
  expect(response, `${route} does not document ${status}`).to.not.equal(undefined);
  return (typeof response!.$ref === 'string' ? resolvePointer(liveDoc, response!.$ref) : response) as JsonObject;
}

/** A problem as the document says the operation answers it: the status documented, a Problem body, its code among the status's codes. */
function expectDocumentedProblem(route: string, status: number, body: unknown): z.output<typeof ProblemSchema> {
  const codes = problemCodes(liveDoc, documentedResponse(route, status));
  expect(codes, `${route} ${status} is not a problem+json answer`).to.be.an('array');
  const problem = parse(ProblemSchema, body, `${route} ${status}`);
  expectDocumentedKeys(body, liveSchemas.Problem, `${route} ${status}`);
  expect(problem.status, route).to.equal(status);
  expect(codes, `${route} ${status}: code ${problem.code}`).to.include(problem.code);
  return problem;
}

/** The zod schemas of the components the lifecycle's answers name. */
const LIVE_SCHEMAS = {
  Model: ModelSchema,
  Rollout: RolloutSchema,
  RolloutList: RolloutListSchema,
  ModelEventList: ModelEventListSchema,
} as const;

/**
 * A JSON answer as the document says the operation answers it: the status
 * documented, its schema the component `name` (by `$ref`), the body parsed
 * by that component's zod schema, with no key the component leaves out.
 */
function parseDocumented<N extends keyof typeof LIVE_SCHEMAS>(route: string, status: number, body: unknown, name: N): z.output<(typeof LIVE_SCHEMAS)[N]> {
  expect(documentedResponse(route, status), `${route} ${status}`).to.have.nested.property('content.application/json.schema.$ref', `#/components/schemas/${name}`);
  const value = parse(LIVE_SCHEMAS[name], body, `${route} ${status}`) as z.output<(typeof LIVE_SCHEMAS)[N]>;
  expectDocumentedKeys(body, liveSchemas[name], `${route}: ${name}`);
  const b = body as JsonObject;
  if (name === 'Model') for (const d of b.versions_detail as unknown[]) expectKeysWithin(d, liveSchemas.VersionDetail, `${route}: VersionDetail`);
  if (name === 'Rollout') expectDocumentedKeys(b.from, (liveSchemas.Rollout.properties as Record<string, JsonObject>).from!, `${route}: Rollout.from`);
  const items = name === 'RolloutList' ? ['Rollout', b.data] : name === 'ModelEventList' ? ['ModelEvent', b.data] : undefined;
  if (items) for (const item of items[1] as unknown[]) expectDocumentedKeys(item, liveSchemas[items[0] as SchemaName], `${route}: ${String(items[0])}`);
  return value;
}

describe('GET /openapi.json', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  it('serves the document without an API key', async () => {
    const res = await p.api('/openapi.json', { key: null });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
    expect(await res.json()).to.deep.equal(JSON.parse(JSON.stringify(buildOpenApi())));
  });

  it('describes what the gateway really answers', async () => {
    const schemas = buildOpenApi().components.schemas as Record<SchemaName, JsonObject>;

    const modelsBody = (await (await p.api('/v1/models')).json()) as { data: unknown[] };
    const models = parse(ModelListSchema, modelsBody, 'GET /v1/models');
    expect(models.data.map((m) => m.name)).to.include('mlp');
    expectDocumentedKeys(modelsBody.data[0], schemas.Model, 'Model');
    parse(ModelSchema, await (await p.api('/v1/models/mlp')).json(), 'GET /v1/models/mlp');

    // No worker: the job stays queued, which is all this needs.
    const created = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: 1, input: { features: new Array(64).fill(0.5) } }) });
    expect(created.status).to.equal(202);
    const jobBody: unknown = await created.json();
    const job = parse(JobSchema, jobBody, 'POST /v1/jobs');
    expectDocumentedKeys(jobBody, schemas.Job, 'Job');
    expect(created.headers.get('location')).to.equal(job.urls.get);
    parse(JobSchema, await (await p.api(job.urls.get)).json(), 'GET /v1/jobs/{id}');
    const canceled = parse(JobSchema, await (await p.api(job.urls.cancel, { method: 'POST' })).json(), 'POST /v1/jobs/{id}/cancel');
    expect(canceled.status).to.equal('canceled');

    const missing = await p.api('/v1/jobs/00000000-0000-4000-8000-000000000000');
    expect(missing.status).to.equal(404);
    expect(missing.headers.get('content-type')).to.match(/^application\/problem\+json/);
    const problemBody: unknown = await missing.json();
    const problem = parse(ProblemSchema, problemBody, '404');
    expect(problem.code).to.equal('job_not_found');
    expectDocumentedKeys(problemBody, schemas.Problem, 'Problem');

    const batchRes = await p.api('/v1/batches', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', items: [{ custom_id: 'a', input: { features: new Array(64).fill(0.5) } }] }),
    });
    expect(batchRes.status).to.equal(202);
    const batchBody: unknown = await batchRes.json();
    const batch = parse(BatchSchema, batchBody, 'POST /v1/batches');
    expectDocumentedKeys(batchBody, schemas.Batch, 'Batch');
    const list = parse(BatchListSchema, await (await p.api('/v1/batches?limit=5')).json(), 'GET /v1/batches');
    expect(list.data.map((b) => b.id)).to.include(batch.id);
    parse(BatchSchema, await (await p.api(batch.urls.cancel, { method: 'POST' })).json(), 'POST /v1/batches/{id}/cancel');

    const unknownField = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: {}, extra: 1 }) });
    expect(unknownField.status).to.equal(400);
    expect(parse(ProblemSchema, await unknownField.json(), '400').code).to.equal('invalid_input');

    const input = { features: new Array(64).fill(0.5) };
    const withDeadline = await p.api('/v1/jobs', { method: 'POST', headers: { 'cancel-after': '1h30m' }, body: JSON.stringify({ model: 'mlp', input }) });
    expect(withDeadline.status).to.equal(202);
    const badDeadline = await p.api('/v1/jobs', { method: 'POST', headers: { 'cancel-after': '25h' }, body: JSON.stringify({ model: 'mlp', input }) });
    expect(badDeadline.status).to.equal(400);
    expect(parse(ProblemSchema, await badDeadline.json(), 'Cancel-After 25h').code).to.equal('invalid_input');

    const deliveriesBody: unknown = await (await p.api(`/v1/jobs/${job.id}/webhook_deliveries`)).json();
    const jobDeliveries = parse(WebhookDeliveryListSchema, deliveriesBody, 'GET /v1/jobs/{id}/webhook_deliveries');
    expect(jobDeliveries).to.deep.equal({ object: 'list', data: [] });
    expectDocumentedKeys(deliveriesBody, schemas.WebhookDeliveryList, 'WebhookDeliveryList');
    parse(WebhookDeliveryListSchema, await (await p.api(`/v1/batches/${batch.id}/webhook_deliveries`)).json(), 'GET /v1/batches/{id}/webhook_deliveries');
    const unknownJob = await p.api(`/v1/jobs/${EXAMPLE_JOB_ID}/webhook_deliveries`);
    expect(unknownJob.status).to.equal(404);
    expect(parse(ProblemSchema, await unknownJob.json(), '404').code).to.equal('job_not_found');
    const event = 'msg_00000000000000000000000000000000';
    for (const [method, url] of [['GET', `/v1/webhook_deliveries/${event}`], ['POST', `/v1/webhook_deliveries/${event}/resend`]] as const) {
      const res = await p.api(url, { method });
      expect(res.status, `${method} ${url}`).to.equal(404);
      expect(parse(ProblemSchema, await res.json(), `${method} ${url}`).code).to.equal('not_found');
    }

    // Every route with a path parameter: a malformed percent-encoding is 400 invalid_input, as the document lists.
    for (const route of Object.keys(PROBLEM_CODES).filter((r) => r.includes('{'))) {
      const [method, template] = route.split(' ') as [string, string];
      const res = await p.api(template.replace(/\{[a-z_]+\}/, '%zz'), { method });
      expect(res.status, route).to.equal(400);
      expect(parse(ProblemSchema, await res.json(), route).code, route).to.equal('invalid_input');
    }

    const readyRes = await p.api('/readyz', { key: null });
    expect(readyRes.status).to.equal(200);
    const readyBody: unknown = await readyRes.json();
    const ready = parse(ReadySchema, readyBody, 'GET /readyz');
    expectDocumentedKeys(readyBody, schemas.Ready, 'Ready');
    expect(ready.models?.mlp).to.have.keys('1', '2');

    // No ADMIN_API_KEYS on this gateway: the admin routes are off, 403 whatever the key.
    for (const key of [TEST_KEY, 'admin-secret', null]) {
      const off = await p.api('/v1/models/mlp/events', { key });
      expect(off.status, String(key)).to.equal(403);
      expect(expectDocumentedProblem('GET /v1/models/{name}/events', off.status, await off.json()).code).to.equal('forbidden');
    }
  });
});

describe('the model lifecycle routes, live', () => {
  const ADMIN_KEY = 'admin-secret';
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  before(async () => {
    // A throwaway repository (never ./models): mlp's versions 1 and 2, served by the platform's worker.
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } });
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}` } });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  const admin = (pathname: string, init: RequestInit & { key?: string | null } = {}) => p!.api(pathname, { key: ADMIN_KEY, ...init });
  const put = (weights: unknown) => admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights }) });
  const ROUTING = 'PUT /v1/models/{name}/routing';
  const CREATE = 'POST /v1/models/{name}/rollouts';

  async function describeMlp() {
    const res = await p!.api('/v1/models/mlp');
    return parseDocumented('GET /v1/models/{name}', res.status, await res.json(), 'Model');
  }

  it('answers GET /v1/models/{name}, the routing, rollouts and events as the document describes them', async () => {
    const model = await describeMlp();
    expect(model.versions).to.deep.equal(['1', '2']);
    expect(model.versions_detail).to.deep.equal([
      { version: '1', state: 'ready', workers_ready: 1 },
      { version: '2', state: 'ready', workers_ready: 1 },
    ]);
    expect(model).to.deep.include({ default_version: '2', routing: { '2': 100 }, routing_source: 'default' });
    const listed = await p!.api('/v1/models');
    const list = parse(ModelListSchema, await listed.json(), 'GET /v1/models');
    expect(list.data.find((m) => m.name === 'mlp')).to.deep.equal(model);

    // The routing: explicit weights, and the default version is the one with the most traffic (ties to the higher).
    let res = await put({ '1': 70, '2': 30 });
    let routed = parseDocumented(ROUTING, res.status, await res.json(), 'Model');
    expect(res.status).to.equal(200);
    expect(routed).to.deep.include({ default_version: '1', routing: { '1': 70, '2': 30 }, routing_source: 'explicit' });
    res = await put({ '1': 50, '2': 50 });
    expect(parseDocumented(ROUTING, res.status, await res.json(), 'Model').default_version).to.equal('2');
    for (const [weights, why] of [
      [{ '1': 50, '2': 40 }, /sum to 90/],
      [{ '1': 50.5, '2': 49.5 }, /integers/],
      [{ '7': 100 }, /not ready/],
      [{}, /name no version/],
    ] as const) {
      res = await put(weights);
      expect(res.status, JSON.stringify(weights)).to.equal(422);
      const problem = expectDocumentedProblem(ROUTING, res.status, await res.json());
      expect(problem.code).to.equal('invalid_routing');
      expect(problem.detail).to.match(why);
    }
    res = await admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: null, extra: 1 }) });
    expect(res.status).to.equal(400);
    expect(expectDocumentedProblem(ROUTING, res.status, await res.json()).code).to.equal('invalid_input');
    res = await admin('/v1/models/nope/routing', { method: 'PUT', body: JSON.stringify({ weights: null }) });
    expect(expectDocumentedProblem(ROUTING, res.status, await res.json()).code).to.equal('model_not_found');
    res = await put(null);
    routed = parseDocumented(ROUTING, res.status, await res.json(), 'Model');
    expect(routed).to.deep.include({ default_version: '2', routing: { '2': 100 }, routing_source: 'default' });

    // A rollout: created at its first step, which is the routing at once.
    const body = { version: 1, steps: [10, 50, 100], step_seconds: 600 };
    res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).to.equal(201);
    const rollout = parseDocumented(CREATE, res.status, await res.json(), 'Rollout');
    expect(rollout).to.deep.include({ model: 'mlp', version: '1', steps: [10, 50, 100], step_seconds: 600, max_error_rate: 0.01, max_p50_latency_ratio: 2 });
    expect(rollout).to.deep.include({ step: 0, state: 'running', ended_at: null, reason: null });
    expect(rollout.from).to.deep.equal({ routing: { '2': 100 }, routing_source: 'default' });
    expect(await describeMlp()).to.deep.include({ routing: { '1': 10, '2': 90 }, routing_source: 'explicit', default_version: '2' });

    // While it runs: no routing by hand, no second rollout.
    res = await put({ '2': 100 });
    expect(res.status).to.equal(409);
    expect(expectDocumentedProblem(ROUTING, res.status, await res.json()).code).to.equal('conflict');
    res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '1', steps: [100], step_seconds: 60 }) });
    expect(res.status).to.equal(409);
    expect(expectDocumentedProblem(CREATE, res.status, await res.json()).code).to.equal('conflict');
    // Bodies: steps that do not rise or end at 100 (422 invalid_input); a version not ready (422 invalid_routing);
    // not an object, an unknown field, a field missing or of the wrong type (400 invalid_input), as everywhere in the API.
    for (const [bad, code, status] of [
      [{ version: 1, steps: [50, 40, 100], step_seconds: 60 }, 'invalid_input', 422],
      [{ version: 1, steps: [10, 50], step_seconds: 60 }, 'invalid_input', 422],
      [{ version: 1, steps: [100], step_seconds: 60, extra: true }, 'invalid_input', 400],
      [{ version: 1, steps: [100] }, 'invalid_input', 400],
      [{ version: 1, steps: '100', step_seconds: 60 }, 'invalid_input', 400],
      [{ version: 7, steps: [100], step_seconds: 60 }, 'invalid_routing', 422],
      [[1, 2], 'invalid_input', 400],
    ] as const) {
      res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify(bad) });
      expect(res.status, JSON.stringify(bad)).to.equal(status);
      expect(expectDocumentedProblem(CREATE, res.status, await res.json()).code, JSON.stringify(bad)).to.equal(code);
    }

    res = await admin(`/v1/models/mlp/rollouts/${rollout.id}`);
    expect(parseDocumented('GET /v1/models/{name}/rollouts/{id}', res.status, await res.json(), 'Rollout')).to.deep.equal(rollout);
    res = await admin('/v1/models/mlp/rollouts/ro_AAAAAAAAAAAA');
    expect(expectDocumentedProblem('GET /v1/models/{name}/rollouts/{id}', res.status, await res.json()).code).to.equal('not_found');
    res = await admin('/v1/models/mlp/rollouts');
    expect(parseDocumented('GET /v1/models/{name}/rollouts', res.status, await res.json(), 'RolloutList').data).to.deep.equal([rollout]);

    // Canceled: the routing is back to what it was (the default), and a second cancel is 409.
    const CANCEL = 'POST /v1/models/{name}/rollouts/{id}/cancel';
    res = await admin(`/v1/models/mlp/rollouts/${rollout.id}/cancel`, { method: 'POST' });
    const canceled = parseDocumented(CANCEL, res.status, await res.json(), 'Rollout');
    expect(res.status).to.equal(200);
    expect(canceled).to.deep.include({ id: rollout.id, state: 'canceled', reason: 'canceled by ops' });
    expect(canceled.ended_at).to.be.a('string');
    expect(await describeMlp()).to.deep.include({ routing: { '2': 100 }, routing_source: 'default' });
    res = await admin(`/v1/models/mlp/rollouts/${rollout.id}/cancel`, { method: 'POST' });
    expect(res.status).to.equal(409);
    expect(expectDocumentedProblem(CANCEL, res.status, await res.json()).code).to.equal('conflict');

    // Unload and load again: 202 with the Model; a pinned draining version is 404 version_not_found.
    res = await admin('/v1/models/mlp/versions/1/unload', { method: 'POST' });
    expect(res.status).to.equal(202);
    const unloaded = parseDocumented('POST /v1/models/{name}/versions/{version}/unload', res.status, await res.json(), 'Model');
    expect(unloaded.versions).to.deep.equal(['2']);
    expect(unloaded.versions_detail.find((d) => d.version === '1')?.state).to.equal('draining');
    const pinned = await p!.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: 1, input: { features: new Array(64).fill(0.5) } }) });
    expect(pinned.status).to.equal(404);
    expect(expectDocumentedProblem('POST /v1/jobs', pinned.status, await pinned.json()).code).to.equal('version_not_found');
    res = await admin('/v1/models/mlp/versions/1/unload', { method: 'POST' });
    expect(expectDocumentedProblem('POST /v1/models/{name}/versions/{version}/unload', res.status, await res.json()).code).to.equal('version_not_found');
    res = await admin('/v1/models/mlp/versions/1/load', { method: 'POST' });
    expect(res.status).to.equal(202);
    const loaded = parseDocumented('POST /v1/models/{name}/versions/{version}/load', res.status, await res.json(), 'Model');
    expect(loaded.versions).to.deep.equal(['1', '2']);
    res = await admin('/v1/models/mlp/versions/9/load', { method: 'POST' });
    expect(expectDocumentedProblem('POST /v1/models/{name}/versions/{version}/load', res.status, await res.json()).code).to.equal('version_not_found');
    res = await admin('/v1/models/nope/versions/1/load', { method: 'POST' });
    expect(expectDocumentedProblem('POST /v1/models/{name}/versions/{version}/load', res.status, await res.json()).code).to.equal('model_not_found');

    // The events log: newest first, in pages; every change above with its actor.
    const EVENTS = 'GET /v1/models/{name}/events';
    res = await admin('/v1/models/mlp/events?limit=100');
    const all = parseDocumented(EVENTS, res.status, await res.json(), 'ModelEventList');
    expect(all.has_more).to.equal(false);
    const types = all.data.map((e) => e.type);
    expect(types.slice(0, 4)).to.deep.equal(['version_loaded', 'version_unloaded', 'rollout_canceled', 'rollout_started']);
    expect(all.data[0]).to.deep.include({ actor: 'ops', data: { version: '1', state: 'loading' } });
    expect(all.data[1]).to.deep.include({ actor: 'ops', data: { version: '1', state: 'draining', reason: 'unloaded' } });
    expect(all.data.filter((e) => e.type === 'routing_changed').map((e) => e.data.weights)).to.deep.equal([null, { '1': 50, '2': 50 }, { '1': 70, '2': 30 }]);
    const ready = all.data.filter((e) => e.type === 'version_loaded' && e.data.state === 'ready');
    expect(ready.map((e) => e.data.version).sort()).to.deep.equal(['1', '2']);
    for (const e of ready) expect(e.actor).to.match(/^worker:/);
    for (const e of all.data) expect(MODEL_EVENT_TYPES as readonly string[]).to.include(e.type);
    const times = all.data.map((e) => Date.parse(e.at));
    expect(times).to.deep.equal([...times].sort((a, b) => b - a));

    res = await admin('/v1/models/mlp/events?limit=2');
    const first = parseDocumented(EVENTS, res.status, await res.json(), 'ModelEventList');
    expect(first.has_more).to.equal(true);
    expect(first.data).to.deep.equal(all.data.slice(0, 2));
    res = await admin(`/v1/models/mlp/events?limit=2&after=${first.data[1]!.id}`);
    const second = parseDocumented(EVENTS, res.status, await res.json(), 'ModelEventList');
    expect(second.data).to.deep.equal(all.data.slice(2, 4));
    res = await admin('/v1/models/mlp/events');
    expect(parseDocumented(EVENTS, res.status, await res.json(), 'ModelEventList').data).to.have.length(Math.min(20, all.data.length));
    for (const query of ['after=evt_unknown', 'limit=0', 'limit=101', 'page=2']) {
      res = await admin(`/v1/models/mlp/events?${query}`);
      expect(res.status, query).to.equal(400);
      expect(expectDocumentedProblem(EVENTS, res.status, await res.json()).code, query).to.equal('invalid_input');
    }
    res = await admin('/v1/models/nope/events');
    expect(expectDocumentedProblem(EVENTS, res.status, await res.json()).code).to.equal('model_not_found');

    // A version that cannot load: 422 with why; the others serve on.
    mkdirSync(path.join(repo!.root, 'mlp', '8'));
    writeFileSync(path.join(repo!.root, 'mlp', '8', 'model.onnx'), 'not an ONNX model');
    res = await admin('/v1/models/mlp/versions/8/load', { method: 'POST' });
    expect(res.status).to.equal(422);
    expect(expectDocumentedProblem('POST /v1/models/{name}/versions/{version}/load', res.status, await res.json()).code).to.equal('invalid_input');
    expect((await describeMlp()).versions_detail.find((d) => d.version === '8')?.state).to.equal('failed');
  });

  it('answers every admin route 401 without an admin key and 403 with a tenant’s key, as documented', async () => {
    for (const route of ADMIN_ROUTE_LIST) {
      const [method, template] = route.split(' ') as [string, string];
      const url = template.replace('{name}', 'mlp').replace('{version}', '1').replace('{id}', 'ro_AAAAAAAAAAAA');
      const body = method === 'GET' ? undefined : '{}';
      for (const [key, status, code] of [
        [null, 401, 'unauthorized'],
        ['not-a-key', 401, 'unauthorized'],
        [TEST_KEY, 403, 'forbidden'],
      ] as const) {
        const res = await p!.api(url, { method, key, ...(body ? { body } : {}) });
        expect(res.status, `${route} with ${String(key)}`).to.equal(status);
        expect(res.headers.get('content-type'), route).to.match(/^application\/problem\+json/);
        expect(expectDocumentedProblem(route, res.status, await res.json()).code, route).to.equal(code);
      }
    }
    // Not rate limited, and never answered 429: the document lists none.
  });
});
