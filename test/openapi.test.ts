import { readdirSync, readFileSync } from 'node:fs';
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
  ModelListSchema,
  ModelSchema,
  ProblemSchema,
  ReadySchema,
  WebhookDeliveryListSchema,
  type JsonObject,
  type SchemaName,
} from '../apps/gateway/src/openapi/schemas.js';
import { REPO_ROOT, startPlatform, type TestPlatform } from './helpers/platform.js';

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'] as const;

/**
 * Routes the gateway has served from the start, as `METHOD /path` with
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
];

/**
 * The problem codes each operation can answer, per status, read off the code
 * (routes/, jobs/, batches/, http/): a code the document lists that the route
 * cannot answer, or one it can that the document leaves out, fails the test.
 * 401 `unauthorized`, 429 `rate_limited` and 500 `internal_error` are every
 * /v1 route's and checked separately, unless a route's 429 says more.
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
      if (path_.startsWith('/v1/')) {
        expect(op.security, route).to.equal(undefined); // inherits the document's bearerAuth
        expect(op.responses, route).to.include.keys('401', '429');
      } else {
        expect(op.security, route).to.deep.equal([]);
      }
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
      const expected: Record<string, string[]> = { '429': ['rate_limited'], ...PROBLEM_CODES[route] };
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
    const dirs = ['apps/worker/src', 'apps/gateway/src/jobs', 'apps/gateway/src/batches', 'packages/batch-store/src', 'packages/job-store/src'];
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

describe('GET /openapi.json', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  /** The body's keys are exactly the documented properties: nothing undocumented, nothing missing. */
  function expectDocumentedKeys(body: unknown, schema: JsonObject, what: string): void {
    expect(Object.keys(body as object).sort(), what).to.deep.equal(Object.keys(schema.properties as object).sort());
  }
  function parse<T extends z.ZodType>(schema: T, body: unknown, what: string): z.output<T> {
    const result = schema.safeParse(body);
    expect(result.success, `${what}: ${result.error?.message}`).to.equal(true);
    return result.data!;
  }

  it('serves the document without an API key', async () => {
    const res = await p.api('/openapi.json', { key: null });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
    expect(await res.json()).to.deep.equal(JSON.parse(JSON.stringify(buildOpenApi())));
  });

  it('describes what the gateway really answers', async () => {
    const schemas = buildOpenApi().components.schemas as Record<SchemaName, JsonObject>;

    const models = parse(ModelListSchema, await (await p.api('/v1/models')).json(), 'GET /v1/models');
    expect(models.data.map((m) => m.name)).to.include('mlp');
    expectDocumentedKeys(models.data[0], schemas.Model, 'Model');
    parse(ModelSchema, await (await p.api('/v1/models/mlp')).json(), 'GET /v1/models/mlp');

    // No worker: the job stays queued, which is all this needs.
    const created = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: 1, input: { features: new Array(64).fill(0.5) } }) });
    expect(created.status).to.equal(202);
    const job = parse(JobSchema, await created.json(), 'POST /v1/jobs');
    expectDocumentedKeys(job, schemas.Job, 'Job');
    expect(created.headers.get('location')).to.equal(job.urls.get);
    parse(JobSchema, await (await p.api(job.urls.get)).json(), 'GET /v1/jobs/{id}');
    const canceled = parse(JobSchema, await (await p.api(job.urls.cancel, { method: 'POST' })).json(), 'POST /v1/jobs/{id}/cancel');
    expect(canceled.status).to.equal('canceled');

    const missing = await p.api('/v1/jobs/00000000-0000-4000-8000-000000000000');
    expect(missing.status).to.equal(404);
    expect(missing.headers.get('content-type')).to.match(/^application\/problem\+json/);
    const problem = parse(ProblemSchema, await missing.json(), '404');
    expect(problem.code).to.equal('job_not_found');
    expectDocumentedKeys(problem, schemas.Problem, 'Problem');

    const batchRes = await p.api('/v1/batches', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', items: [{ custom_id: 'a', input: { features: new Array(64).fill(0.5) } }] }),
    });
    expect(batchRes.status).to.equal(202);
    const batch = parse(BatchSchema, await batchRes.json(), 'POST /v1/batches');
    expectDocumentedKeys(batch, schemas.Batch, 'Batch');
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

    const jobDeliveries = parse(WebhookDeliveryListSchema, await (await p.api(`/v1/jobs/${job.id}/webhook_deliveries`)).json(), 'GET /v1/jobs/{id}/webhook_deliveries');
    expect(jobDeliveries).to.deep.equal({ object: 'list', data: [] });
    expectDocumentedKeys(jobDeliveries, schemas.WebhookDeliveryList, 'WebhookDeliveryList');
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
    const ready = parse(ReadySchema, await readyRes.json(), 'GET /readyz');
    expectDocumentedKeys(ready, schemas.Ready, 'Ready');
    expect(ready.models?.mlp).to.have.keys('1', '2');
  });
});
