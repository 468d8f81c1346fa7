import { expect } from 'chai';
import { Redis } from 'ioredis';
import { keys, type Batch, type BatchResultLine } from '@infer/contract';
import { b64Fp32, expectResultsWhole, mlpFeatures, readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/** Batches that end in ways the platform decides itself. */
describe('batches ended by the gateway, and chunks whose inputs are gone', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  let hooks: WebhookReceiver<{ type: string; data: Batch }>;
  before(async () => {
    hooks = await startWebhookReceiver();
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    await hooks?.close();
  });

  it('a batch every item of which is invalid completes at its upload and sends one batch.completed with its final counts', async () => {
    await p.startWorker(); // deliveries run on a worker
    const n = 2048 + 7;
    const body = toNdjson(Array.from({ length: n }, (_, i) => (i % 2 ? 'nope' : { custom_id: `x${i}`, input: { features: [1, 2] } })));
    const batch = await submitBatch(p, { ndjson: body + '\r\n\r\n', query: `model=mlp&webhook=${encodeURIComponent(hooks.url)}` });
    expect(batch.status).to.equal('completed');
    expect(batch.request_counts).to.deep.equal({ total: n, succeeded: 0, failed: n, canceled: 0 });
    const lines = await readResults(p, batch.id);
    expectResultsWhole(lines, batch);
    expect(lines[0]!.custom_id).to.equal('x0');
    expect(lines[0]!.error!.message.startsWith('line 1:')).to.equal(true);
    expect(lines[n - 1]!.error!.message.startsWith(`line ${n}:`)).to.equal(true);
    const events = await waitUntil(() => {
      const mine = hooks.deliveries.filter((d) => d.event.data?.id === batch.id);
      return mine.length ? mine : null;
    }, 20_000, 'batch.completed');
    expect(events).to.have.length(1);
    expect(events[0]!.event.data.request_counts).to.deep.equal(batch.request_counts);
    await p.closeWorker();
  });

  it('chunks whose stored inputs were evicted end inputs_lost; items invalid at upload keep their own error; counts match the file', async () => {
    const n = 2 * 2048 + 11;
    const body = toNdjson(Array.from({ length: n }, (_, i) => (i === 5 ? '{"input":' : { custom_id: `e${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })));
    const batch = await submitBatch(p, { ndjson: body });
    expect(batch.status).to.equal('queued');
    // Evicted (maxmemory with an eviction policy): chunk 1's inputs only.
    const inputs = keys(p.prefix).batchInputs(batch.id);
    expect(await redis.hdel(inputs, '1')).to.equal(1);
    await p.startWorker();
    const ended = await waitForBatchEnd(p, batch.id, 30_000);
    expect(ended.status).to.equal('completed');
    const lines = await readResults(p, batch.id);
    expectResultsWhole(lines, ended);
    expect(lines[5]!.error!.code).to.equal('invalid_json');
    for (let i = 2048; i < 4096; i++) if (lines[i]!.error?.code !== 'inputs_lost') expect.fail(`line ${i}: ${JSON.stringify(lines[i])}`);
    expect(ended.request_counts).to.deep.equal({ total: n, succeeded: n - 1 - 2048, failed: 1 + 2048, canceled: 0 });
    await p.closeWorker();
  });
});
