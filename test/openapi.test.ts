import { readFileSync } from 'node:fs';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { expect } from 'chai';
import type { z } from 'zod';
import { buildOpenApi, type OpenApiDocument } from '../apps/gateway/src/openapi.js';
import {
  BatchListSchema,
  BatchSchema,
  JobSchema,
  ModelListSchema,
  ModelSchema,
  ProblemSchema,
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
  'GET /healthz',
  'GET /readyz',
  'GET /metrics',
  'GET /openapi.json',
];

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

  it('documents the Prefer: wait and Idempotency-Key headers and the Preference-Applied answer', () => {
    const params = doc.components.parameters as Record<string, JsonObject>;
    expect(params.PreferWait).to.include({ name: 'Prefer', in: 'header' });
    expect(params.IdempotencyKey).to.include({ name: 'Idempotency-Key', in: 'header' });
    const create = operationsOf(doc).find((o) => o.route === 'POST /v1/jobs')!.op;
    expect(create).to.have.nested.property('responses.200.headers.Preference-Applied');
    expect(create).to.have.nested.property('responses.202.headers.Location');
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
  });
});
