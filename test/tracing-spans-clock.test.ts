import { expect } from 'chai';
import { Redis } from 'ioredis';
import { InMemorySpanExporter, SimpleSpanProcessor, BasicTracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { loadConfig } from '@infer/config';
import { platformClockOffset, syncPlatformClock, type RedisTime } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A worker's micro-batch span and its InferenceSession.run spans are timed
 * by the worker alone, on its own clock (the performance timeline, as
 * OpenTelemetry's), while the job's stamps are on the platform's (Redis's).
 * When the micro-batch span took the platform's clock, a host 3 s behind
 * Redis drew its runs 3 s before their batch.
 *
 * Redis's clock is put 3 s ahead by syncing this process's clock to a fake
 * TIME; the apps' own 5-s syncs to the real Redis may undo that at any
 * moment, so a job counts only if the offset held from before its submit to
 * after its answer.
 */

/** A Redis whose clock is `aheadMs` ahead of this process's. */
function fakeRedis(aheadMs: number): RedisTime {
  return {
    async time() {
      const ms = Date.now() + aheadMs;
      return [String(Math.floor(ms / 1000)), String((ms % 1000) * 1000)];
    },
  };
}

describe('tracing: a micro-batch on a worker whose clock is 3 s behind Redis\'s', function () {
  this.timeout(60_000);
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'infer-worker' }), spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const prefix = uniquePrefix('span-clock');
  const real = new Redis(TEST_REDIS_URL);
  let gateway: Gateway | undefined;
  let worker: InferenceWorker | undefined;

  after(async () => {
    await worker?.close();
    await gateway?.close();
    await deletePrefix(TEST_REDIS_URL, prefix);
    await provider.shutdown();
    // Leave this process on the real Redis's clock for the tests after this one.
    await syncPlatformClock(real);
    real.disconnect();
  });

  it('has its InferenceSession.run spans inside their micro-batch span', async () => {
    const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, API_KEYS: `tenant-a:${TEST_KEY}`, WORKER_METRICS_PORT: '0' });
    gateway = await createGateway(config, silentLogger);
    worker = await createWorker(config, silentLogger, { models: gateway.models, tracerProvider: provider });
    await gateway.catalog.refresh();
    const base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
    const toMs = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
    let attempt = 0;
    const batch = await waitUntil(
      async () => {
        exporter.reset();
        await syncPlatformClock(fakeRedis(3000));
        const res = await fetch(`${base}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TEST_KEY}`, prefer: 'wait=10', 'content-type': 'application/json', traceparent: `00-1af7651916cd43dd8448eb211c8031${String(attempt++ % 100).padStart(2, '0')}-b7ad6b7169203331-01` },
          body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(1) } }),
        });
        expect(res.status, await res.clone().text()).to.equal(200);
        // The apps' own sync to the real Redis came between: try again.
        if (Math.abs(platformClockOffset() - 3000) > 20) return undefined;
        return waitUntil(() => exporter.getFinishedSpans().find((s) => s.name === 'microbatch mlp'), 10_000, 'the micro-batch span');
      },
      30_000,
      'a job run while the offset held',
    );
    const runs = exporter.getFinishedSpans().filter((s: ReadableSpan) => s.name === 'InferenceSession.run' && s.parentSpanContext?.spanId === batch.spanContext().spanId);
    expect(runs.length).to.be.at.least(1);
    for (const run of runs) {
      expect(toMs(run.startTime), 'run start vs its micro-batch start (ms)').to.be.at.least(toMs(batch.startTime) - 5);
      expect(toMs(run.endTime), 'run end vs its micro-batch end (ms)').to.be.at.most(toMs(batch.endTime) + 5);
    }
  });
});
