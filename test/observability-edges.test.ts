import { Writable } from 'node:stream';
import { expect } from 'chai';
import { trace, ROOT_CONTEXT } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, BasicTracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { loadConfig } from '@infer/config';
import { createLogger, silentLogger } from '@infer/logger';
import { contextOfTraceparent, formatTraceparent, parseTraceparent } from '@infer/tracing';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { deletePrefix, OTHER_TENANT_KEY, SHIPPED_MODELS, startPlatform, TEST_KEY, TEST_REDIS_URL, uniquePrefix, type TestPlatform } from './helpers/platform.js';
import { parse, value } from './helpers/prometheus.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * Observability checks that hold today and that no other test makes:
 * traceparent parsing, the logger's redaction, the job.started delivery's
 * place in the job's trace, the gateway's /metrics and /readyz while Redis
 * is away, and the queue dashboard's read-only API on every kind of queue.
 */

describe('observability: traceparent', () => {
  const TRACE = '0af7651916cd43dd8448eb211c80319c';
  const SPAN = 'b7ad6b7169203331';

  it('parses a valid W3C traceparent, sampled or not, and formats it back', () => {
    const sc = parseTraceparent(`00-${TRACE}-${SPAN}-01`);
    expect(sc).to.deep.equal({ traceId: TRACE, spanId: SPAN, traceFlags: 1, isRemote: true });
    expect(formatTraceparent(sc!)).to.equal(`00-${TRACE}-${SPAN}-01`);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)?.traceFlags).to.equal(0);
    // Only the sampled bit is kept from the flags.
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-03`)?.traceFlags).to.equal(1);
    expect(parseTraceparent(`  00-${TRACE}-${SPAN}-01  `)?.traceId, 'surrounding whitespace').to.equal(TRACE);
  });

  it('refuses malformed ones (never trust the queue or the client), and a context from one is the base context', () => {
    for (const bad of [
      undefined,
      '',
      'garbage',
      `ff-${TRACE}-${SPAN}-01`, // version ff is invalid
      `00-${'0'.repeat(32)}-${SPAN}-01`, // all-zero trace id
      `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero span id
      `00-${TRACE.toUpperCase()}-${SPAN}-01`, // upper-case hex
      `00-${TRACE.slice(1)}-${SPAN}-01`, // short trace id
      `00-${TRACE}-${SPAN}-1`, // short flags
      `00-${TRACE}-${SPAN}-01, 00-${TRACE}-${SPAN}-01`, // two headers joined
    ]) {
      expect(parseTraceparent(bad), String(bad)).to.equal(undefined);
      expect(contextOfTraceparent(bad)).to.equal(ROOT_CONTEXT);
    }
    expect(trace.getSpanContext(contextOfTraceparent(`00-${TRACE}-${SPAN}-01`))?.spanId).to.equal(SPAN);
  });
});

describe('observability: the logger redacts credentials, secrets, inputs and outputs', () => {
  it('censors every REDACT_PATHS field, nested where documented', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger({ level: 'info', name: 'redact-test', destination: sink });
    logger.info(
      {
        req: { headers: { authorization: 'Bearer sk-aaa-1' } },
        headers: { authorization: 'Bearer sk-bbb-2' },
        authorization: 'Bearer sk-ccc-3',
        apiKey: 'sk-ddd-4',
        secret: 'whsec_eee5',
        webhook: { secret: 'whsec_fff6' },
        input: { features: [0.987654321] },
        job: { input: { x: 0.876543219 }, output: { y: 0.765432198 } },
        output: [0.654321987],
        data: { input: 'in-ggg7', output: 'out-hhh8' },
        kept: 'visible-value',
      },
      'redaction',
    );
    const text = lines.join('');
    for (const secret of ['sk-aaa-1', 'sk-bbb-2', 'sk-ccc-3', 'sk-ddd-4', 'whsec_eee5', 'whsec_fff6', '0.987654321', '0.876543219', '0.765432198', '0.654321987', 'in-ggg7', 'out-hhh8']) {
      expect(text, secret).to.not.contain(secret);
    }
    expect(text).to.contain('visible-value');
    expect(text).to.contain('[redacted]');
  });
});

describe('observability: a job.started delivery joins the job\'s trace', function () {
  this.timeout(60_000);
  const exporter = new InMemorySpanExporter();
  const providerFor = (service: string) => new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': service }), spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const gatewayProvider = providerFor('infer-gateway');
  const workerProvider = providerFor('infer-worker');
  const prefix = uniquePrefix('obs-started');
  let gateway: Gateway;
  let worker: InferenceWorker;
  let base: string;
  let receiver: WebhookReceiver<{ type: string }>;

  before(async () => {
    receiver = await startWebhookReceiver();
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WORKER_METRICS_PORT: '0',
      HOST: '127.0.0.1',
    });
    gateway = await createGateway(config, silentLogger, { tracerProvider: gatewayProvider });
    worker = await createWorker(config, silentLogger, { models: gateway.models, tracerProvider: workerProvider });
    await gateway.catalog.refresh();
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });

  after(async () => {
    await worker?.close();
    await gateway?.close();
    await receiver?.close();
    await deletePrefix(TEST_REDIS_URL, prefix);
    await gatewayProvider.shutdown();
    await workerProvider.shutdown();
  });

  it('has a delivery run (process webhooks) under the job\'s enqueue span for job.started as for job.completed', async () => {
    const clientTrace = '6df7651916cd43dd8448eb211c80319c';
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, prefer: 'wait=10', traceparent: `00-${clientTrace}-b7ad6b7169203331-01` },
      body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook: receiver.url, webhook_events_filter: ['start', 'completed'] }),
    });
    expect(res.status).to.equal(200);
    await waitUntil(() => receiver.deliveries.length >= 2, 10_000, 'both deliveries');
    expect(receiver.deliveries.map((d) => d.event.type).sort()).to.deep.equal(['job.completed', 'job.started']);
    const inTrace = (): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === clientTrace);
    const enqueue = await waitUntil(() => inTrace().find((s) => s.name === 'enqueue'), 5000, 'the enqueue span');
    // One delivery run per event, each in the job's trace; job.started's is a direct child of the enqueue span
    // (its add is a bulk add of its own), job.completed's is under its add span, itself under the enqueue span.
    const runs = await waitUntil(() => {
      const found = inTrace().filter((s) => s.name === 'process webhooks');
      return found.length >= 2 ? found : null;
    }, 10_000, 'two delivery runs in the job\'s trace');
    const byId = new Map(inTrace().map((s) => [s.spanContext().spanId, s]));
    for (const run of runs) {
      let p = run.parentSpanContext?.spanId;
      while (p !== undefined && p !== enqueue.spanContext().spanId) p = byId.get(p)?.parentSpanContext?.spanId;
      expect(p, 'a delivery run descends from the enqueue span').to.equal(enqueue.spanContext().spanId);
      expect(run.resource.attributes['service.name']).to.equal('infer-worker');
    }
  });
});

describe('observability: the gateway\'s /metrics and /readyz while Redis is away', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let p: TestPlatform;
  before(async () => {
    redis = await OwnRedis.start();
    p = await startPlatform({ redisUrl: redis.url, worker: false });
  });
  after(async () => {
    await redis.start();
    await p.close();
    await redis.stop();
  });

  const scrape = async () => {
    const res = await fetch(`${p.baseUrl}/metrics`);
    expect(res.status).to.equal(200);
    return parse(await res.text());
  };

  it('scrapes at once, keeps the queue gauges at their last values and counts the failed reads; /readyz says 503 with Retry-After: 2', async () => {
    const MLP2 = { model: 'mlp', version: '2' };
    // Two jobs queued (no worker): a depth to keep.
    for (let i = 0; i < 2; i++) {
      expect((await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: 2, input: { features: new Array(64).fill(0.5) } }) })).status).to.equal(202);
    }
    const before = await scrape();
    expect(value(before, 'infer_queue_depth', MLP2)).to.equal(2);
    expect(value(before, 'infer_queue_metrics_errors_total')).to.equal(0);

    await redis.stop();

    const t0 = performance.now();
    const during = await scrape();
    expect(performance.now() - t0, 'a scrape with Redis away answers within its 2 s budget').to.be.below(3000);
    expect(value(during, 'infer_queue_depth', MLP2), 'the last value kept').to.equal(2);
    expect(value(during, 'infer_queue_oldest_age_seconds', { ...MLP2, queue: 'interactive' })).to.be.greaterThan(0);
    // The failed read is counted (by the time of the next scrape at the latest): once per failed scrape.
    const after = await scrape();
    const errors = value(after, 'infer_queue_metrics_errors_total');
    expect(errors).to.be.within(1, 2);
    expect(value(await scrape(), 'infer_queue_metrics_errors_total')).to.equal(errors + 1);

    const ready = await fetch(`${p.baseUrl}/readyz`);
    expect(ready.status).to.equal(503);
    expect(ready.headers.get('retry-after')).to.equal('2');
    expect(ready.headers.get('content-type')).to.match(/^application\/json/);
    expect(await ready.json()).to.deep.equal({ status: 'unavailable', redis: 'unreachable' });
    expect((await fetch(`${p.baseUrl}/healthz`)).status).to.equal(200);

    // Back: the gauges read Redis again.
    await redis.start();
    await waitUntil(async () => (await fetch(`${p.baseUrl}/readyz`)).status === 200, 10_000, '/readyz to recover');
    await waitUntil(async () => value(await scrape(), 'infer_queue_depth', MLP2) === 0, 10_000, 'the gauges to read the restarted (empty) Redis');
  });
});

describe('observability: the queue dashboard is read-only on every kind of queue, for admins only', function () {
  this.timeout(60_000);
  const ADMIN = 'admin-key-observability';
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
  });
  after(async () => {
    await p?.close();
  });

  const admin = (path: string, method = 'GET', body?: unknown) =>
    fetch(`${p.baseUrl}/admin/queues${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });

  it('refuses every action bull-board offers (405), on interactive, bulk and webhook queues, and changes nothing', async () => {
    const submitted = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: 2, input: { features: new Array(64).fill(0.5) } }) });
    expect(submitted.status).to.equal(202);
    const job = (await submitted.json()) as { id: string };
    const list = (await (await admin('/api/queues?activeQueue=infer.mlp.v2&status=waiting')).json()) as { queues: Array<{ name: string; readOnlyMode: boolean; jobs: Array<{ id: string }> }> };
    const envelope = list.queues.find((q) => q.name === 'infer.mlp.v2')!.jobs[0]!.id;
    expect(list.queues.every((q) => q.readOnlyMode)).to.equal(true);
    for (const queue of ['infer.mlp.v2', 'bulk.mlp.v2', 'webhooks']) {
      const actions: Array<[string, string, unknown]> = [
        [`/api/queues/${queue}/add`, 'POST', { name: 'x', data: {} }],
        [`/api/queues/${queue}/retry/failed`, 'PUT', {}],
        [`/api/queues/${queue}/promote`, 'PUT', {}],
        [`/api/queues/${queue}/clean/completed`, 'PUT', {}],
        [`/api/queues/${queue}/pause`, 'PUT', {}],
        [`/api/queues/${queue}/resume`, 'PUT', {}],
        [`/api/queues/${queue}/concurrency`, 'PUT', { concurrency: 1 }],
        [`/api/queues/${queue}/empty`, 'PUT', {}],
        [`/api/queues/${queue}/obliterate`, 'PUT', {}],
        [`/api/queues/${queue}/${envelope}/retry`, 'PUT', {}],
        [`/api/queues/${queue}/${envelope}/clean`, 'PUT', {}],
        [`/api/queues/${queue}/${envelope}/promote`, 'PUT', {}],
        [`/api/queues/${queue}/${envelope}/update-data`, 'PATCH', { jobData: {} }],
        [`/api/queues/${queue}/${envelope}/priority`, 'PATCH', { priority: 1 }],
      ];
      for (const [path, method, body] of actions) {
        const res = await admin(path, method, body);
        expect(res.status, `${method} ${path}`).to.equal(405);
        await res.arrayBuffer();
      }
    }
    // Pause-all touches no read-only queue.
    expect((await admin('/api/queues/pause', 'PUT', {})).status).to.equal(200);
    expect(((await (await p.api(`/v1/jobs/${job.id}`)).json()) as { status: string }).status).to.equal('queued');
    const after = (await (await admin('/api/queues?activeQueue=infer.mlp.v2&status=waiting')).json()) as { queues: Array<{ name: string; isPaused?: boolean; jobs: Array<{ id: string }> }> };
    const mlp = after.queues.find((q) => q.name === 'infer.mlp.v2')!;
    expect(mlp.jobs.map((j) => j.id)).to.include(envelope);
    expect(mlp.isPaused ?? false).to.equal(false);
  });

  it('answers a tenant 403 and anyone else 401 on its API and pages, whatever the credentials\' form', async () => {
    const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    for (const path of ['/admin/queues', '/admin/queues/api/queues', '/admin/queues/api/redis/stats', '/admin/queues/queue/infer.mlp.v2']) {
      for (const [authorization, status] of [
        [undefined, 401],
        [`Bearer ${TEST_KEY}`, 403],
        [`Bearer ${OTHER_TENANT_KEY}`, 403],
        [basic('ops', TEST_KEY), 403],
        [basic(TEST_KEY, ''), 403],
        [basic('ops', 'wrong'), 401],
        [basic('', ''), 401],
        ['Basic !!!', 401],
        [`Bearer ${ADMIN}x`, 401],
      ] as Array<[string | undefined, number]>) {
        const res = await fetch(p.baseUrl + path, { headers: authorization ? { authorization } : {} });
        expect(res.status, `${path} with ${authorization ?? 'nothing'}`).to.equal(status);
        await res.arrayBuffer();
      }
    }
    expect((await fetch(`${p.baseUrl}/admin/queues/api/queues`, { headers: { authorization: basic('anyone', ADMIN) } })).status).to.equal(200);
  });
});
