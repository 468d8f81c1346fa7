import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { bulkQueue, type Job } from '@infer/contract';
import { BatchStore } from '@infer/batch-store';
import { silentLogger } from '@infer/logger';
import { BulkWorker, type InteractiveGate } from '../apps/worker/src/bulk/bulk-worker.js';
import { createWorker } from '../apps/worker/src/index.js';
import { b64Fp32, getBatch, mlpFeatures, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { TEST_REDIS_URL, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/** An interactive worker that stays busy until told otherwise, counting how often bulk work asked. */
class HeldGate implements InteractiveGate {
  busy = true;
  waits = 0;
  private wake: () => void = () => undefined;
  private idle = new Promise<void>((resolve) => (this.wake = resolve));

  whenIdle(): Promise<void> {
    this.waits++;
    return this.idle;
  }

  release(): void {
    this.busy = false;
    this.wake();
  }
}

const bigBatch = (rows: number) => toNdjson(Array.from({ length: rows }, (_, i) => ({ input: { features: b64Fp32(mlpFeatures(i)) } })));

describe('batches: interactive jobs go first', () => {
  let p: TestPlatform;
  beforeEach(async () => {
    p = await startPlatform({ worker: false });
  });
  afterEach(async () => {
    await p.close();
  });

  it('a job submitted after a batch of several chunks ends before the batch does', async () => {
    const batch = await submitBatch(p, { ndjson: bigBatch(4 * 2048) });
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(7) } }) });
    expect(res.status).to.equal(202);
    const { id: jobId } = (await res.json()) as Job;

    const worker = await createWorker(p.config, silentLogger, { models: p.gateway.models });
    try {
      const ended = await waitForBatchEnd(p, batch.id);
      expect(ended.request_counts.succeeded).to.equal(4 * 2048);
      const job = (await (await p.api(`/v1/jobs/${jobId}`)).json()) as Job;
      expect(job.status).to.equal('succeeded');
      expect(Date.parse(job.completed_at!)).to.be.below(Date.parse(ended.completed_at!));
    } finally {
      await worker.close();
    }
  });

  it('bulk slices wait while interactive work of the model is in hand, and run once it is done', async () => {
    const batch = await submitBatch(p, { ndjson: bigBatch(300) });
    const gate = new HeldGate();
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    const worker = new BulkWorker({ model: p.gateway.models.resolve('mlp'), connection: redis, store, logger: silentLogger, prefix: p.prefix, lockMs: 30_000, gate, maxYieldMs: 60_000 });
    try {
      worker.start();
      // It took the chunk (the batch is running) and is holding before its first slice.
      await waitUntil(() => gate.waits > 0, 10_000, 'the bulk worker to yield');
      const held = await getBatch(p, batch.id);
      expect(held.status).to.equal('running');
      expect(held.request_counts.succeeded).to.equal(0);
      gate.release();
      const ended = await waitForBatchEnd(p, batch.id);
      expect(ended.request_counts.succeeded).to.equal(300);
      expect(gate.waits).to.equal(1);
    } finally {
      gate.release();
      await worker.close();
      redis.disconnect();
    }
  });

  it('a bulk worker that stops finishes the chunk in hand and hands back the one it fetched ahead', async () => {
    const batch = await submitBatch(p, { ndjson: bigBatch(3 * 2048) });
    const model = p.gateway.models.resolve('mlp');
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    const options = { model, connection: redis, store, logger: silentLogger, prefix: p.prefix, lockMs: 30_000, maxYieldMs: 60_000 };
    const gate = new HeldGate();
    const first = new BulkWorker({ ...options, gate });
    const queue = new Queue(bulkQueue(p.prefix, 'mlp', model.version).name, { connection: redis, prefix: bulkQueue(p.prefix, 'mlp', model.version).prefix });
    let second: BulkWorker | undefined;
    try {
      first.start();
      await waitUntil(() => gate.waits > 0, 10_000, 'the first chunk to be held');
      await waitUntil(async () => (await queue.getJobCounts('active')).active === 2, 10_000, 'the next chunk to be fetched ahead');
      const closing = first.close();
      gate.release();
      await closing;
      expect((await getBatch(p, batch.id)).request_counts.succeeded).to.equal(2048);
      expect(await queue.getJobCounts('waiting', 'active')).to.deep.equal({ waiting: 2, active: 0 });
      second = new BulkWorker(options);
      second.start();
      const ended = await waitForBatchEnd(p, batch.id);
      expect(ended.request_counts.succeeded).to.equal(3 * 2048);
    } finally {
      gate.release();
      await first.close();
      await second?.close();
      await queue.close();
      redis.disconnect();
    }
  });

  it('unbroken interactive load slows bulk work down but never stops it (maxYieldMs)', async () => {
    const batch = await submitBatch(p, { ndjson: bigBatch(200) });
    const gate = new HeldGate(); // never released
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    const worker = new BulkWorker({ model: p.gateway.models.resolve('mlp'), connection: redis, store, logger: silentLogger, prefix: p.prefix, lockMs: 30_000, gate, maxYieldMs: 5 });
    try {
      worker.start();
      const ended = await waitForBatchEnd(p, batch.id);
      expect(ended.request_counts.succeeded).to.equal(200);
      expect(gate.waits).to.equal(Math.ceil(200 / 64)); // one bounded wait before each slice
    } finally {
      gate.release();
      await worker.close();
      redis.disconnect();
    }
  });
});
