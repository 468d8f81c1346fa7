import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { bulkQueue, chunkJobId, interactiveKeys } from '@infer/contract';
import { BatchStore } from '@infer/batch-store';
import { silentLogger } from '@infer/logger';
import { BulkWorker, Sweeper } from '../apps/worker/src/index.js';
import { getBatch, mlpFeatures, readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Every job ends: a chunk whose retries run out still ends its rows (so its
 * batch completes), and a chunk whose queue job disappeared is ended by the
 * workers' sweep. Redis "fails" under the worker through the batch store it
 * writes with: every results write is refused, as a Redis that errors would.
 */

const lines = (n: number) => toNdjson(Array.from({ length: n }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } })));

describe('every job ends', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  beforeEach(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  });
  afterEach(async () => {
    redis.disconnect();
    await p?.close();
  });

  it('a chunk whose every attempt fails (Redis refusing its results) ends its rows failed on the last attempt, and its batch completes', async () => {
    const batch = await submitBatch(p, { ndjson: lines(100) });
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    // Redis errors on every results write of a normal run; the last attempt's write of failed rows goes through.
    let refused = 0;
    const failing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'finishChunk') {
          return (id: string, index: number, results: Buffer, succeeded: number, failed: number, now: number) => {
            if (succeeded > 0) {
              refused++;
              return Promise.reject(new Error('ERR simulated: Redis refused the write'));
            }
            return target.finishChunk(id, index, results, succeeded, failed, now);
          };
        }
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
    const worker = new BulkWorker({ model: p.gateway.models.resolve('mlp'), connection: redis, store: failing, logger: silentLogger, prefix: p.prefix, lockMs: 30_000 });
    try {
      worker.start();
      const ended = await waitForBatchEnd(p, batch.id, 30_000);
      expect(refused, 'attempts refused').to.equal(3);
      expect(ended.status).to.equal('completed');
      expect(ended.request_counts).to.deep.include({ total: 100, succeeded: 0, failed: 100 });
      const results = await readResults(p, batch.id);
      expect(results).to.have.length(100);
      for (const r of results) {
        expect(r.status).to.equal('failed');
        expect(r.error!.code).to.equal('retries_exhausted');
        expect(r.error!.message).to.match(/failed 3 times.*Redis refused/);
      }
    } finally {
      await worker.close();
    }
  });

  it('the sweep ends a chunk whose queue job disappeared, so its batch completes with every row once', async () => {
    const batch = await submitBatch(p, { ndjson: lines(3 * 2048) });
    // Someone removes the second chunk's job from the queue (the dashboard's "remove", say).
    const ref = bulkQueue(p.prefix, 'mlp', p.gateway.models.resolve('mlp').version);
    const queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
    try {
      expect(await queue.remove(chunkJobId(batch.id, 1))).to.equal(1);
    } finally {
      await queue.close();
    }
    await p.startWorker();
    await waitUntil(async () => (await getBatch(p, batch.id)).request_counts.succeeded === 2 * 2048, 30_000, 'the two chunks left to run');
    expect((await getBatch(p, batch.id)).status).to.equal('running');
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    const sweeper = new Sweeper({ redis, prefix: p.prefix, batchStore: store, served: [], logger: silentLogger });
    try {
      expect(await sweeper.sweep()).to.deep.equal({ lostChunks: 1, droppedJobs: 0, abandonedUploads: 0, uncountedInstances: 0 });
      // A second sweep finds nothing more.
      expect(await sweeper.sweep()).to.deep.equal({ lostChunks: 0, droppedJobs: 0, abandonedUploads: 0, uncountedInstances: 0 });
    } finally {
      await sweeper.close();
    }
    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.request_counts).to.deep.include({ total: 3 * 2048, succeeded: 2 * 2048, failed: 2048 });
    const results = await readResults(p, batch.id);
    expect(results.map((r) => r.index)).to.deep.equal(Array.from({ length: 3 * 2048 }, (_, i) => i));
    for (const r of results.slice(2048, 2 * 2048)) expect(r.error?.code).to.equal('lost');
  });

  it('the sweep drops job index entries whose envelope was deleted under the queue; those jobs read 404 from then on', async () => {
    const submitted = await Promise.all(Array.from({ length: 5 }, (_, i) => p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) })));
    const ids = await Promise.all(submitted.map(async (r) => ((await r.json()) as { id: string }).id));
    const model = p.gateway.models.resolve('mlp');
    const k = interactiveKeys(p.prefix, model.name, model.version);
    // An operator deletes the envelopes by hand.
    for (const envelope of await redis.lrange(k.wait, 0, -1)) await redis.del(k.base + envelope);
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    const sweeper = new Sweeper({ redis, prefix: p.prefix, batchStore: store, served: [model], logger: silentLogger });
    try {
      // Their ids are still in `wait` (only the hashes went), so the queued counts are left to the take that drops them.
      expect(await sweeper.sweep({ indexes: true })).to.deep.equal({ lostChunks: 0, droppedJobs: 5, abandonedUploads: 0, uncountedInstances: 0 });
    } finally {
      await sweeper.close();
    }
    expect(await redis.hlen(k.index)).to.equal(0);
    for (const id of ids) expect((await p.api(`/v1/jobs/${id}`)).status).to.equal(404);
  });
});
