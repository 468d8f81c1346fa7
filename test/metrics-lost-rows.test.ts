import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { bulkQueue, chunkJobId } from '@infer/contract';
import { mlpFeatures, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { parse, value } from './helpers/prometheus.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/operations.md: the worker's `infer_bulk_rows_total{status}` counts
 * "rows of bulk batches ended here, `succeeded` or `failed`". The rows of a
 * chunk whose queue job disappeared are ended by the worker's periodic sweep
 * (Sweeper: failed, `lost`), which counts nothing: the batch reports them
 * failed, and no worker's figure does, so the fleet's rows ended never add up
 * to the batches' request counts.
 */
describe('bulk rows ended by the sweep are counted', function () {
  // The sweep runs every 30 s (its default interval): the test waits for it.
  this.timeout(90_000);
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
  });

  it('counts the lost rows as failed in infer_bulk_rows_total', async () => {
    const ROWS = 7;
    const items = Array.from({ length: ROWS }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }));
    const batch = await submitBatch(p, { json: { model: 'mlp', version: 2, items } });
    // Its one chunk's queue job goes before any worker takes it (as when it is removed by hand).
    const ref = bulkQueue(p.prefix, 'mlp', '2');
    const queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
    try {
      expect(await queue.remove(chunkJobId(batch.id, 0))).to.equal(1);
    } finally {
      await queue.close();
    }

    // A worker comes; its sweep (every 30 s fleet-wide, or now) ends the chunk.
    await (await p.startWorker()).sweep();
    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.request_counts).to.include({ failed: ROWS, succeeded: 0 });

    const MLP2 = { model: 'mlp', version: '2' };
    const s = await waitUntil(
      async () => {
        const samples = parse(await (await fetch(`http://127.0.0.1:${p.worker!.metricsPort}/metrics`)).text());
        return value(samples, 'infer_bulk_rows_total', { ...MLP2, status: 'failed' }) >= ROWS ? samples : null;
      },
      5_000,
      'the lost rows to be counted',
    );
    expect(value(s, 'infer_bulk_rows_total', { ...MLP2, status: 'failed' })).to.equal(ROWS);
  });
});
