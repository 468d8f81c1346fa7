import path from 'node:path';
import { expect } from 'chai';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { FIXTURE_MODELS, OTHER_TENANT_KEY, SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Every answer the running gateway gives, checked against the OpenAPI
 * document it serves at GET /openapi.json: the status is one the
 * operation lists, the Content-Type one of its media types, the body valid
 * against its schema (JSON Schema 2020-12, by Ajv), the result lines of
 * NDJSON against `x-item-schema`, the documented Location and Retry-After
 * headers present; and, from the contract, field names snake_case and
 * times RFC 3339 in UTC.
 */

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** RFC 3339 in UTC, as the contract says ("Times are RFC 3339 UTC strings"). */
const UTC_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Objects whose keys are the client's or the model's, not field names. */
const MAP_FIELDS = new Set(['output', 'metadata', 'routing', 'weights', 'models', 'input', 'data_by_version']);

function nonSnakeKeys(value: unknown, at = '$', out: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((v, i) => nonSnakeKeys(v, `${at}[${i}]`, out));
  else if (isObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (!/^[a-z0-9]+(_[a-z0-9]+)*$/.test(k)) out.push(`${at}.${k}`);
      if (!MAP_FIELDS.has(k)) nonSnakeKeys(v, `${at}.${k}`, out);
    }
  }
  return out;
}

class OpenApiChecker {
  private readonly ajv: Ajv2020;
  private readonly compiled = new Map<string, ValidateFunction>();
  readonly violations: string[] = [];

  constructor(private readonly doc: Json) {
    this.ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
    this.ajv.addFormat('date-time', UTC_TIME);
    this.ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
    this.ajv.addFormat('uri', /^[a-z][a-z0-9+.-]*:\S+$/i);
    this.ajv.addSchema(doc, 'openapi');
  }

  private resolve(node: unknown): Json {
    let n = node as Json;
    while (isObject(n) && typeof n.$ref === 'string') {
      let at: unknown = this.doc;
      for (const tok of (n.$ref as string).slice(2).split('/')) at = (at as Json)[tok.replaceAll('~1', '/').replaceAll('~0', '~')];
      n = at as Json;
    }
    return n;
  }

  private validator(schema: Json, key: string): ValidateFunction {
    let v = this.compiled.get(key);
    if (!v) {
      // Rewrite local refs to the registered document's.
      const text = JSON.stringify(schema).replaceAll('"$ref":"#/', '"$ref":"openapi#/');
      v = this.ajv.compile(JSON.parse(text) as Json);
      this.compiled.set(key, v);
    }
    return v;
  }

  /** The operation of a concrete request path. */
  operation(method: string, pathname: string): { template: string; op: Json } | undefined {
    const paths = this.doc.paths as Record<string, Json>;
    const candidates = Object.keys(paths).filter((t) => new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(pathname));
    // A literal segment beats a parameter: the fewest parameters wins.
    candidates.sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0));
    for (const t of candidates) {
      const op = paths[t]![method.toLowerCase()];
      if (isObject(op)) return { template: t, op };
    }
    return undefined;
  }

  /** Check one answer; returns its parsed JSON body (or the NDJSON lines), recording every violation. */
  check(method: string, url: string, res: Response, text: string, label = ''): unknown {
    const pathname = new URL(url, 'http://x').pathname;
    const where = `${method} ${pathname} → ${res.status}${label ? ` (${label})` : ''}`;
    const bad = (what: string) => this.violations.push(`${where}: ${what}`);
    const found = this.operation(method, pathname);
    if (!found) {
      bad('no operation in the document');
      return undefined;
    }
    const responses = found.op.responses as Json;
    const raw = responses[String(res.status)] ?? responses[`${String(res.status)[0]}XX`] ?? responses.default;
    if (!raw) {
      bad(`status ${res.status} is not among the documented ${Object.keys(responses).join(', ')}`);
      return undefined;
    }
    const response = this.resolve(raw);
    const contentType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    const content = response.content as Record<string, Json> | undefined;
    if (!content) {
      if (text.length) bad(`a body where the document gives none (${contentType})`);
      return undefined;
    }
    const media = content[contentType];
    if (!media) {
      bad(`Content-Type ${contentType || '(none)'} is not among the documented ${Object.keys(content).join(', ')}`);
      return undefined;
    }
    for (const [name, h] of Object.entries((response.headers ?? {}) as Json)) {
      const header = this.resolve(h);
      const value = res.headers.get(name);
      if ((header.required === true || /^(retry-after|location)$/i.test(name)) && value === null) {
        // Location: only where the document gives it to this status; Retry-After: 429 and 503 always carry it.
        bad(`documented header ${name} is missing`);
      }
      if (value !== null && isObject(header.schema)) {
        const schema = header.schema as Json;
        const v = this.validator(schema, `header:${name}:${JSON.stringify(schema)}`);
        const asValue = schema.type === 'integer' ? Number(value) : value;
        if (!v(asValue)) bad(`header ${name}: ${value} does not match ${JSON.stringify(schema)}`);
      }
    }
    const key = `${found.template} ${method} ${res.status} ${contentType}`;
    if (contentType === 'application/x-ndjson') {
      const item = media['x-item-schema'] as Json | undefined;
      const lines = text.split('\n').filter((l) => l.length);
      if (!text.endsWith('\n') && text.length) bad('NDJSON does not end in a newline');
      const out: unknown[] = [];
      if (item) {
        const v = this.validator(item, `${key} item`);
        lines.forEach((l, i) => {
          const parsed: unknown = JSON.parse(l);
          out.push(parsed);
          if (!v(parsed)) bad(`line ${i}: ${this.ajv.errorsText(v.errors)}: ${l.slice(0, 300)}`);
          const keys = nonSnakeKeys(parsed);
          if (keys.length) bad(`line ${i}: field names not snake_case: ${keys.join(', ')}`);
        });
      }
      return out;
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      if (contentType.endsWith('json')) bad(`not JSON: ${text.slice(0, 200)}`);
      return text;
    }
    if (isObject(media.schema)) {
      const v = this.validator(media.schema as Json, key);
      if (!v(body)) bad(`${this.ajv.errorsText(v.errors)}: ${text.slice(0, 400)}`);
    }
    if (found.template !== '/openapi.json') {
      const keys = nonSnakeKeys(body);
      if (keys.length) bad(`field names not snake_case: ${keys.join(', ')}`);
    }
    if (res.status === 202 && isObject(body) && isObject(body.urls) && response.headers && 'Location' in (response.headers as Json)) {
      if (res.headers.get('location') !== body.urls.get) bad(`Location ${res.headers.get('location')} is not urls.get ${String(body.urls.get)}`);
    }
    return body;
  }

  /** Check a webhook delivery against the document's `webhooks` entry for its event type. */
  checkWebhook(type: string, headers: Record<string, string | string[] | undefined>, body: unknown): void {
    const bad = (what: string) => this.violations.push(`webhook ${type}: ${what}`);
    const entry = (this.doc.webhooks as Json)[type];
    if (!isObject(entry)) {
      bad('not in the document’s webhooks');
      return;
    }
    const post = entry.post as Json;
    for (const p of post.parameters as unknown[]) {
      const param = this.resolve(p);
      const value = headers[String(param.name).toLowerCase()];
      if (param.required && value === undefined) bad(`header ${String(param.name)} missing`);
      else if (value !== undefined) {
        const v = this.validator(param.schema as Json, `wh-param ${String(param.name)}`);
        if (!v(value)) bad(`header ${String(param.name)}: ${String(value)}: ${this.ajv.errorsText(v.errors)}`);
      }
    }
    const schema = (((post.requestBody as Json).content as Json)['application/json'] as Json).schema as Json;
    const v = this.validator(schema, `wh-body ${type}`);
    if (!v(body)) bad(`${this.ajv.errorsText(v.errors)}: ${JSON.stringify(body).slice(0, 300)}`);
    const keys = nonSnakeKeys(body);
    if (keys.length) bad(`field names not snake_case: ${keys.join(', ')}`);
  }
}

const ADMIN_KEY = 'openapi-answers-admin';

describe('the gateway’s answers against its own OpenAPI document', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let checker: OpenApiChecker;
  let receiver: WebhookReceiver;
  const features = new Array(64).fill(0.25);

  before(async () => {
    repo = tempModelRepo({
      mlp: { from: path.join(SHIPPED_MODELS, 'mlp') },
      'ocr-cls': { from: path.join(SHIPPED_MODELS, 'ocr-cls') },
      'always-fails': { from: path.join(FIXTURE_MODELS, 'always-fails') },
      'scalar-double': { from: path.join(FIXTURE_MODELS, 'scalar-double') },
      'add-fixed': { from: path.join(FIXTURE_MODELS, 'add-fixed') },
    });
    p = await startPlatform({
      models: repo.root,
      env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}`, WEBHOOK_ALLOW_PRIVATE: 'true', MAX_BODY_BYTES: '65536', WEBHOOK_RETRY_DELAYS_MS: '50,50' },
    });
    receiver = await startWebhookReceiver();
    const res = await p.api('/openapi.json', { key: null });
    checker = new OpenApiChecker((await res.json()) as Json);
  });
  after(async () => {
    await receiver?.close();
    await p?.close();
    repo?.remove();
  });

  /** A request through the checker: the parsed answer. */
  async function call(method: string, url: string, init: { body?: unknown; raw?: string; headers?: Record<string, string>; key?: string | null; label?: string } = {}) {
    const res = await p.api(url, {
      method,
      ...(init.raw !== undefined ? { body: init.raw } : init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      ...(init.headers ? { headers: init.headers } : {}),
      ...(init.key !== undefined ? { key: init.key } : {}),
    });
    const text = await res.text();
    const body = checker.check(method, url, res, text, init.label);
    return { res, status: res.status, body: body as Json & Json[], text };
  }

  const violations = () => checker.violations.splice(0);

  it('the job routes: every answer, success and problem, is one the document describes', async () => {
    const created = await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features }, metadata: { k: 'v' } } });
    const waited = await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features } }, headers: { prefer: 'wait=10' } });
    expect(waited.status).to.equal(200);
    await call('GET', `/v1/jobs/${String(created.body.id)}`, { headers: { prefer: 'wait=10' } });
    await call('POST', `/v1/jobs/${String(waited.body.id)}/cancel`, { label: 'ended: 409' });
    await call('POST', '/v1/jobs', { body: { model: 'always-fails', input: { x: [1, 2] } }, headers: { prefer: 'wait=10' }, label: 'failed job' });
    await call('POST', '/v1/jobs', { body: { model: 'scalar-double', input: { v: 2.5 } }, headers: { prefer: 'wait=10' }, label: 'scalar' });
    await call('POST', '/v1/jobs', { body: { model: 'add-fixed', input: { a: [[1, 2, 3], [4, 5, 6]], b: [[1, 1, 1], [1, 1, 1]] } }, headers: { prefer: 'wait=10' } });
    await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features } }, headers: { 'idempotency-key': 'review-openapi-1' } });
    await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features } }, headers: { 'idempotency-key': 'review-openapi-1' }, label: 'replay' });
    // Problems.
    await call('POST', '/v1/jobs', { raw: '{"model":', label: 'invalid_json' });
    await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features }, extra: 1 }, label: 'unknown field' });
    await call('POST', '/v1/jobs', { body: { model: 'nope', input: {} } });
    await call('POST', '/v1/jobs', { body: { model: 'mlp', version: 9, input: { features } } });
    await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features: [1, 2] } } });
    await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features }, webhook: 'http://[::1' } });
    await call('POST', '/v1/jobs', { raw: JSON.stringify({ model: 'mlp', input: { features: new Array(20000).fill(0.123456789) } }), label: '413' });
    await call('POST', '/v1/jobs', { raw: '{}', headers: { 'content-encoding': 'compress' }, label: '415' });
    await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features } }, headers: { 'cancel-after': '0s' }, label: 'bad Cancel-After' });
    await call('GET', '/v1/jobs/nope', { label: 'unknown id' });
    await call('GET', `/v1/jobs/${String(created.body.id)}`, { key: OTHER_TENANT_KEY, label: 'other tenant' });
    await call('GET', '/v1/jobs/%zz', { label: 'bad escape' });
    await call('GET', '/v1/models', { key: null, label: '401' });
    // A queued job, canceled, and one that passes its deadline with no worker to run it.
    await p.closeWorker();
    try {
      const queued = await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features } } });
      await call('POST', `/v1/jobs/${String(queued.body.id)}/cancel`);
      const late = await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features } }, headers: { 'cancel-after': '1ms', prefer: 'wait=5' }, label: 'deadline' });
      expect(late.body.status).to.equal('canceled');
    } finally {
      await p.startWorker();
    }
    expect(violations()).to.deep.equal([]);
  });

  it('the batch routes: every answer, the result lines included, is one the document describes', async () => {
    const json = await call('POST', '/v1/batches', {
      body: { model: 'mlp', items: [{ custom_id: 'a', input: { features } }, { input: { features: [1] } }, { input: { nope: 1 } }], metadata: { m: 1 } },
    });
    const nd = await call('POST', '/v1/batches?model=mlp&version=1', {
      raw: `${JSON.stringify({ custom_id: 'x', input: { features } })}\nnot json\n\n${JSON.stringify({ input: { features } })}\n`,
      headers: { 'content-type': 'application/x-ndjson' },
    });
    for (const b of [json.body, nd.body]) {
      await waitUntil(async () => ((await (await p.api(`/v1/batches/${String(b.id)}`)).json()) as Json).status === 'completed', 20_000, 'batch to complete');
      await call('GET', `/v1/batches/${String(b.id)}`);
      await call('GET', `/v1/batches/${String(b.id)}/results`);
      await call('POST', `/v1/batches/${String(b.id)}/cancel`, { label: 'ended: 409' });
      await call('GET', `/v1/batches/${String(b.id)}/webhook_deliveries`);
    }
    const page = await call('GET', '/v1/batches?limit=1');
    await call('GET', `/v1/batches?limit=1&after=${String(page.body.last_id)}`);
    await call('GET', '/v1/batches?limit=0', { label: 'bad limit' });
    await call('GET', '/v1/batches?after=nope', { label: 'bad after' });
    await call('GET', '/v1/batches/nope');
    await call('GET', `/v1/batches/${String(json.body.id)}/results`, { key: OTHER_TENANT_KEY, label: 'other tenant' });
    await call('POST', '/v1/batches', { raw: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' }, label: '415' });
    await call('POST', '/v1/batches', { raw: '[1]', label: 'not an object' });
    await call('POST', '/v1/batches', { body: { model: 'mlp', items: [] }, label: 'no items' });
    await call('POST', '/v1/batches?model=mlp&extra=1', { raw: '{}\n', headers: { 'content-type': 'application/x-ndjson' }, label: 'bad query' });
    await call('POST', '/v1/batches', { body: { model: 'nope', items: [{ input: {} }] } });
    await call('POST', '/v1/batches', { body: { model: 'mlp', items: [{ input: { features } }], webhook: 'ftp://example.com/x' } });
    // A batch that cannot run (no worker): its results are 409 until it ends; canceled, its lines say so.
    await p.closeWorker();
    try {
      const queued = await call('POST', '/v1/batches', { body: { model: 'mlp', items: [{ custom_id: 'q', input: { features } }, { input: { features } }] } });
      await call('GET', `/v1/batches/${String(queued.body.id)}/results`, { label: 'not ended: 409' });
      await call('POST', `/v1/batches/${String(queued.body.id)}/cancel`);
      await call('GET', `/v1/batches/${String(queued.body.id)}/results`, { label: 'canceled' });
    } finally {
      await p.startWorker();
    }
    expect(violations()).to.deep.equal([]);
  });

  it('the webhook routes and the events the platform sends are what the document describes', async () => {
    await call('GET', '/v1/webhooks/secret');
    const job = await call('POST', '/v1/jobs', {
      body: { model: 'mlp', input: { features }, webhook: receiver.url, webhook_events_filter: ['start', 'completed'] },
      headers: { prefer: 'wait=10' },
    });
    const batch = await call('POST', '/v1/batches', { body: { model: 'mlp', items: [{ input: { features } }], webhook: receiver.url } });
    await waitUntil(() => receiver.deliveries.length >= 3, 20_000, 'three deliveries');
    for (const d of receiver.deliveries) checker.checkWebhook((d.event as Json).type as string, d.headers, d.event);
    const list = await call('GET', `/v1/jobs/${String(job.body.id)}/webhook_deliveries`);
    await waitUntil(async () => {
      const l = (await (await p.api(`/v1/jobs/${String(job.body.id)}/webhook_deliveries`)).json()) as { data: Json[] };
      return l.data.length === 2 && l.data.every((d) => d.state !== 'pending');
    }, 10_000, 'deliveries to end');
    await call('GET', `/v1/jobs/${String(job.body.id)}/webhook_deliveries`);
    const eventId = String((list.body.data as unknown as Json[])[0]!.id);
    await call('GET', `/v1/webhook_deliveries/${eventId}`);
    await call('POST', `/v1/webhook_deliveries/${eventId}/resend`);
    await call('POST', `/v1/webhook_deliveries/${eventId}/resend`, { label: 'pending: 409' });
    await call('GET', `/v1/webhook_deliveries/${eventId}`, { key: OTHER_TENANT_KEY, label: 'other tenant' });
    await call('GET', `/v1/batches/${String(batch.body.id)}/webhook_deliveries`);
    await call('GET', '/v1/webhook_deliveries/msg_00000000000000000000000000000000');
    // A delivery that fails for good (nobody listens there): its attempts without a status, its state failed.
    const closed = await startWebhookReceiver();
    const deadUrl = closed.url;
    await closed.close();
    const failing = await call('POST', '/v1/jobs', { body: { model: 'mlp', input: { features }, webhook: deadUrl }, headers: { prefer: 'wait=10' } });
    await waitUntil(async () => {
      const l = (await (await p.api(`/v1/jobs/${String(failing.body.id)}/webhook_deliveries`)).json()) as { data: Json[] };
      return l.data.length === 1 && l.data[0]!.state === 'failed';
    }, 15_000, 'the delivery to fail for good');
    const failed = await call('GET', `/v1/jobs/${String(failing.body.id)}/webhook_deliveries`, { label: 'failed delivery' });
    expect((failed.body.data as unknown as Json[])[0]!.attempt_count).to.equal(3);
    expect(violations()).to.deep.equal([]);
  });

  it('the models, their lifecycle and the operations routes answer what the document describes', async () => {
    await call('GET', '/v1/models');
    await call('GET', '/v1/models/ocr-cls');
    await call('GET', '/v1/models/nope');
    await call('GET', '/v1/models/mlp', { key: ADMIN_KEY, label: 'admin reads' });
    await call('PUT', '/v1/models/mlp/routing', { key: ADMIN_KEY, body: { weights: { '1': 50, '2': 50 } } });
    await call('PUT', '/v1/models/mlp/routing', { key: ADMIN_KEY, body: { weights: { '1': -10, '2': 110 } }, label: 'negative' });
    await call('PUT', '/v1/models/mlp/routing', { key: ADMIN_KEY, body: { weights: null } });
    const ro = await call('POST', '/v1/models/mlp/rollouts', { key: ADMIN_KEY, body: { version: '1', steps: [10, 100], step_seconds: 600 } });
    await call('GET', '/v1/models/mlp/rollouts', { key: ADMIN_KEY });
    await call('GET', `/v1/models/mlp/rollouts/${String(ro.body.id)}`, { key: ADMIN_KEY });
    await call('POST', `/v1/models/mlp/rollouts/${String(ro.body.id)}/cancel`, { key: ADMIN_KEY });
    await call('GET', '/v1/models/mlp/events?limit=5', { key: ADMIN_KEY });
    await call('GET', '/v1/models/mlp/events', { label: 'tenant: 403' });
    await call('POST', '/v1/models/mlp/versions/1/unload', { key: ADMIN_KEY });
    await call('POST', '/v1/models/mlp/versions/1/load', { key: ADMIN_KEY });
    await call('GET', '/healthz', { key: null });
    await call('GET', '/readyz', { key: null });
    await call('GET', '/metrics', { key: null });
    expect(violations()).to.deep.equal([]);
  });
});
