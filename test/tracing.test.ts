import { expect } from 'chai';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, BasicTracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { Tracing } from '@infer/tracing';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/** A provider per process, as a real gateway and worker would have, exporting into one in-memory list. */
function providerFor(service: string, exporter: InMemorySpanExporter): BasicTracerProvider {
  return new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': service }), spanProcessors: [new SimpleSpanProcessor(exporter)] });
}

const service = (s: ReadableSpan) => s.resource.attributes['service.name'];
const parentId = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describe('tracing: one trace follows a job across the gateway, the queue, the worker and its webhook', function () {
  this.timeout(60_000);
  const exporter = new InMemorySpanExporter();
  const gatewayProvider = providerFor('infer-gateway', exporter);
  const workerProvider = providerFor('infer-worker', exporter);
  const prefix = uniquePrefix('trace');
  let gateway: Gateway;
  let worker: InferenceWorker;
  let base: string;
  let receiver: WebhookReceiver;

  before(async () => {
    receiver = await startWebhookReceiver();
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      WEBHOOK_ALLOW_PRIVATE: 'true',
    });
    gateway = await createGateway(config, silentLogger, { tracerProvider: gatewayProvider });
    worker = await createWorker(config, silentLogger, { models: gateway.models, tracerProvider: workerProvider });
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

  it('has the request, the enqueue, the queue wait, the job\'s part of the micro-batch and the delivery in the job\'s trace; the batch links to it', async () => {
    // The client's own trace context: the gateway's span continues it.
    const clientTrace = '0af7651916cd43dd8448eb211c80319c';
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, prefer: 'wait=10', traceparent: `00-${clientTrace}-b7ad6b7169203331-01` },
      body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook: receiver.url }),
    });
    expect(res.status).to.equal(200);
    const job = (await res.json()) as { id: string; status: string };
    expect(job.status).to.equal('succeeded');
    await waitUntil(() => receiver.deliveries.length > 0, 10_000, 'the webhook delivery');
    await waitUntil(() => exporter.getFinishedSpans().some((s) => s.spanContext().traceId === clientTrace && s.name === 'process webhooks'), 10_000, 'the delivery span').catch((err) => {
      console.log(exporter.getFinishedSpans().map((s) => `${s.spanContext().traceId} ${s.name} ${service(s)}`).join('\n'));
      throw err;
    });

    const spans = exporter.getFinishedSpans();
    const inTrace = spans.filter((s) => s.spanContext().traceId === clientTrace);
    const byName = (name: string) => inTrace.find((s) => s.name === name);
    const request = byName('POST /v1/jobs');
    const enqueue = byName('enqueue');
    const wait = byName('queue wait');
    const infer = byName('infer mlp');
    expect(request, 'the gateway request span').to.not.equal(undefined);
    expect(parentId(request!)).to.equal('b7ad6b7169203331');
    expect(service(request!)).to.equal('infer-gateway');
    expect(enqueue, 'the enqueue span').to.not.equal(undefined);
    expect(parentId(enqueue!)).to.equal(request!.spanContext().spanId);
    expect(enqueue!.attributes['infer.job.id']).to.equal(job.id);
    // The worker's spans for this job are children of the enqueue span, across processes.
    for (const s of [wait, infer]) {
      expect(s, 'a worker span of the job').to.not.equal(undefined);
      expect(service(s!)).to.equal('infer-worker');
      expect(parentId(s!)).to.equal(enqueue!.spanContext().spanId);
    }
    // The delivery: BullMQ's add under the job's trace, and its process span in the delivery worker.
    expect(inTrace.some((s) => s.name.startsWith('add webhooks'))).to.equal(true);
    expect(byName('process webhooks')).to.not.equal(undefined);

    // The micro-batch: a trace of its own, linked to the job, with its InferenceSession.run child.
    const batch = spans.find((s) => s.name === 'microbatch mlp' && s.links.some((l) => l.context.traceId === clientTrace));
    expect(batch, 'the micro-batch span, linked to the job').to.not.equal(undefined);
    expect(infer!.links.map((l) => l.context.spanId)).to.include(batch!.spanContext().spanId);
    const run = spans.find((s) => s.name === 'InferenceSession.run' && parentId(s) === batch!.spanContext().spanId);
    expect(run, 'the run span under the batch').to.not.equal(undefined);
    expect(run!.attributes['infer.batch.size']).to.be.at.least(1);
  });

  it('makes no span and carries no trace context with tracing off', async () => {
    // A gateway without tracing uses OpenTelemetry's global provider (Tracing.off): a no-op one, unless one is registered.
    // Register one that exports for this test, so a span the gateway made anyway would be seen here.
    const globalExporter = new InMemorySpanExporter();
    const globalProvider = providerFor('global', globalExporter);
    expect(trace.setGlobalTracerProvider(globalProvider), 'the test provider registered as the global one').to.equal(true);
    try {
      const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, API_KEYS: `tenant-a:${TEST_KEY}` });
      const plain = await createGateway(config, silentLogger, { models: gateway.models });
      try {
        const url = `http://127.0.0.1:${await plain.listen(0, '127.0.0.1')}`;
        exporter.reset();
        const res = await fetch(`${url}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TEST_KEY}`, prefer: 'wait=10' },
          body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }),
        });
        expect(res.status).to.equal(200);
        // The worker traces (it has a provider), but the job came with no traceparent: no job spans, only the batch's.
        // The worker makes a batch's spans all at once and ends the batch span last: once it is in, all are.
        await waitUntil(() => exporter.getFinishedSpans().some((s) => s.name === 'microbatch mlp'), 10_000, 'the micro-batch span');
        const names = exporter.getFinishedSpans().map((s) => s.name);
        expect(names.filter((n) => n !== 'microbatch mlp' && n !== 'InferenceSession.run')).to.deep.equal([]);
        expect(exporter.getFinishedSpans().find((s) => s.name === 'microbatch mlp')?.links ?? []).to.deep.equal([]);
      } finally {
        await plain.close();
      }
      // Closed, so every request it took has ended (and any span of one would have).
      expect(globalExporter.getFinishedSpans().map((s) => s.name), 'spans made with tracing off').to.deep.equal([]);
      // And that check can fail: a span on tracing-off's tracer lands in the global provider's exporter.
      Tracing.off.tracer.startSpan('probe').end();
      expect(globalExporter.getFinishedSpans().map((s) => s.name)).to.deep.equal(['probe']);
    } finally {
      trace.disable();
      await globalProvider.shutdown();
    }
  });
});
