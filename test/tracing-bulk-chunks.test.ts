import { expect } from 'chai';
import { InMemorySpanExporter, SimpleSpanProcessor, BasicTracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README "Traces": "The bulk and webhook queues use BullMQ's own `telemetry`
 * option (add and process spans, the context stored with each BullMQ job)";
 * architecture.md: "BullMQ's `telemetry` adapter for the bulk and webhook
 * queues". The gateway does make an `add bulk.…` span per chunk under the
 * upload's request span, with its context stored in the chunk, but the
 * worker that runs the chunk makes no span at all: the trace of a batch ends
 * at the queue.
 */

function providerFor(service: string, exporter: InMemorySpanExporter): BasicTracerProvider {
  return new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': service }), spanProcessors: [new SimpleSpanProcessor(exporter)] });
}
const service = (s: ReadableSpan) => s.resource.attributes['service.name'];

describe('a batch chunk keeps its trace across the bulk queue', function () {
  this.timeout(60_000);
  const exporter = new InMemorySpanExporter();
  const gatewayProvider = providerFor('infer-gateway', exporter);
  const workerProvider = providerFor('infer-worker', exporter);
  const prefix = uniquePrefix('obs-bulktrace');
  let gateway: Gateway;
  let worker: InferenceWorker;
  let base: string;

  before(async () => {
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
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
    await deletePrefix(TEST_REDIS_URL, prefix);
    await gatewayProvider.shutdown();
    await workerProvider.shutdown();
  });

  it('has the worker\'s processing of the chunk in the upload\'s trace, under the chunk\'s add span', async () => {
    const clientTrace = '5bf7651916cd43dd8448eb211c80319c';
    const items = Array.from({ length: 5 }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }));
    const res = await fetch(`${base}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', traceparent: `00-${clientTrace}-b7ad6b7169203331-01` },
      body: JSON.stringify({ model: 'mlp', items }),
    });
    expect(res.status).to.equal(202);
    const batch = (await res.json()) as { id: string };
    await waitUntil(
      async () => {
        const r = await fetch(`${base}/v1/batches/${batch.id}`, { headers: { authorization: `Bearer ${TEST_KEY}` } });
        return ((await r.json()) as { status: string }).status === 'completed';
      },
      20_000,
      'the batch to complete',
    );

    const inTrace = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === clientTrace);
    // The gateway's side is there: the request, and BullMQ's add span of the chunk under it.
    const add = inTrace().find((s) => s.name.startsWith('add bulk.') && service(s) === 'infer-gateway');
    expect(add, "the gateway's add span of the chunk").to.not.equal(undefined);

    // The worker's side: a span of the chunk's processing, in the same trace, descending from the add span.
    const descendsFromAdd = (s: ReadableSpan): boolean => {
      const byId = new Map(inTrace().map((x) => [x.spanContext().spanId, x]));
      for (let p = s.parentSpanContext?.spanId; p !== undefined; p = byId.get(p)?.parentSpanContext?.spanId) {
        if (p === add!.spanContext().spanId) return true;
      }
      return false;
    };
    const workerSpans = await waitUntil(
      () => {
        const found = inTrace().filter((s) => service(s) === 'infer-worker' && descendsFromAdd(s));
        return found.length > 0 ? found : null;
      },
      5_000,
      "a worker span of the chunk in the upload's trace",
    ).catch((err: Error) => {
      const names = exporter.getFinishedSpans().map((s) => `${s.spanContext().traceId === clientTrace ? 'IN ' : '   '}${String(service(s))} ${s.name}`);
      throw new Error(`${err.message}; spans seen:\n${names.join('\n')}`);
    });
    expect(workerSpans.length).to.be.at.least(1);
  });
});
