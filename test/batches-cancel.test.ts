import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { bulkQueue, type Batch } from '@infer/contract';
import { BatchStore } from '@infer/batch-store';
import { silentLogger } from '@infer/logger';
import { BulkWorker, type InteractiveGate } from '../apps/worker/src/bulk/bulk-worker.js';
import { b64Fp32, getBatch, maxAbsDiff, directOrt, mlpFeatures, readResults, submitBatch, toNdjson } from './helpers/batches.js';
import { TEST_REDIS_URL, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A stand-in for the interactive ModelWorker: idle for the first `allowed`
 * slices, then busy until released. It holds a BulkWorker between two slices
 * at an exact place, so a cancel lands mid-batch deterministically.
 */
class SliceCountingGate implements InteractiveGate {
  private reads = 0;
  private released = false;
  waiting = false;
  private wake!: () => void;
  private readonly idle = new Promise<void>((resolve) => (this.wake = resolve));

  constructor(private readonly allowed: number) {}

  get busy(): boolean {
    return ++this.reads > this.allowed && !this.released;
  }

  whenIdle(): Promise<void> {
    this.waiting = true;
    return this.idle;
  }

  release(): void {
    this.released = true;
    this.wake();
  }
}

async function queueCounts(p: TestPlatform): Promise<Record<string, number>> {
  const queue = new Queue(bulkQueue(p.prefix, 'mlp', '2').name, { connection: { url: TEST_REDIS_URL }, prefix: bulkQueue(p.prefix, 'mlp', '2').prefix });
  try {
    return await queue.getJobCounts('waiting', 'active', 'prioritized', 'delayed');
  } finally {
    await queue.close();
  }
}

describe('batches: cancel', () => {
  let p: TestPlatform;
  beforeEach(async () => {
    p = await startPlatform({ worker: false });
  });
  afterEach(async () => {
    await p.close();
  });

  it('a queued batch: every valid item ends canceled at once, invalid ones stay failed; a second cancel is 409', async () => {
    const batch = await submitBatch(p, {
      ndjson: toNdjson([{ custom_id: 'a', input: { features: mlpFeatures(0) } }, 'garbage', { custom_id: 'b', input: { features: mlpFeatures(1) } }]),
    });
    const res = await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
    expect(res.status).to.equal(200);
    const canceled = (await res.json()) as Batch;
    expect(canceled.status).to.equal('canceled');
    expect(canceled.completed_at).to.be.a('string');
    expect(canceled.request_counts).to.deep.equal({ total: 3, succeeded: 0, failed: 1, canceled: 2 });

    const lines = await readResults(p, batch.id);
    expect(lines.map((l) => [l.index, l.custom_id, l.status, l.error?.code ?? null])).to.deep.equal([
      [0, 'a', 'canceled', null],
      [1, null, 'failed', 'invalid_json'],
      [2, 'b', 'canceled', null],
    ]);
    // Its chunk no longer sits in the bulk queue.
    expect(await queueCounts(p)).to.deep.equal({ waiting: 0, active: 0, prioritized: 0, delayed: 0 });

    const again = await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
    expect(again.status).to.equal(409);
    expect(((await again.json()) as { code: string }).code).to.equal('conflict');
  });

  it('mid-way: the chunk already written keeps its results, every item not yet run ends canceled', async () => {
    const n = 3 * 2048 + 100; // four chunks
    const items: unknown[] = Array.from({ length: n }, (_, i) => ({ custom_id: `r${i}`, input: { features: b64Fp32(mlpFeatures(i)) } }));
    items.splice(5000, 0, 'not json');
    const batch = await submitBatch(p, { ndjson: toNdjson(items) });
    const model = p.gateway.models.resolve('mlp');

    // mlp runs 64 rows a slice: the gate lets exactly the first chunk's 32 slices through.
    const gate = new SliceCountingGate(2048 / model.maxBatchSize);
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    const worker = new BulkWorker({ model, connection: redis, store, logger: silentLogger, prefix: p.prefix, lockMs: 30_000, gate, maxYieldMs: 60_000, cancelCheckMs: 0 });
    try {
      worker.start();
      await waitUntil(async () => (await getBatch(p, batch.id)).request_counts.succeeded === 2048, 10_000, 'the first chunk');
      await waitUntil(() => gate.waiting, 10_000, 'the bulk worker to hold before the next slice');
      const running = await getBatch(p, batch.id);
      expect(running.status).to.equal('running');

      const res = await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
      expect(res.status).to.equal(200);
      const canceled = (await res.json()) as Batch;
      expect(canceled.status).to.equal('canceled');
      expect(canceled.request_counts).to.deep.equal({ total: n + 1, succeeded: 2048, failed: 1, canceled: n - 2048 });
      gate.release();
    } finally {
      gate.release();
      await worker.close();
      redis.disconnect();
    }

    // The held chunk stopped at its next slice and wrote nothing: the counts did not move.
    expect((await getBatch(p, batch.id)).request_counts).to.deep.equal({ total: n + 1, succeeded: 2048, failed: 1, canceled: n - 2048 });
    const lines = await readResults(p, batch.id);
    expect(lines).to.have.length(n + 1);
    lines.forEach((l, i) => expect(l.index).to.equal(i));
    expect(lines.slice(0, 2048).every((l) => l.status === 'succeeded' && l.output !== null)).to.equal(true);
    expect(lines.slice(2048).filter((l) => l.status === 'failed').map((l) => l.error!.message.split(':')[0])).to.deep.equal(['line 5001']);
    expect(lines.slice(2048).filter((l) => l.status === 'canceled')).to.have.length(n - 2048);
    expect(lines[4000]!.custom_id).to.equal('r4000');
    const direct = await directOrt(model, [mlpFeatures(0), mlpFeatures(2047)]);
    expect(maxAbsDiff((lines[0]!.output as { probabilities: number[] }).probabilities, direct[0]!)).to.be.at.most(1e-5);
    expect(maxAbsDiff((lines[2047]!.output as { probabilities: number[] }).probabilities, direct[1]!)).to.be.at.most(1e-5);
    expect(await queueCounts(p)).to.deep.equal({ waiting: 0, active: 0, prioritized: 0, delayed: 0 });
  });
});
