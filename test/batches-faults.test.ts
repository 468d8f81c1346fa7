import path from 'node:path';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { bulkQueue, type Batch, type BatchResultLine } from '@infer/contract';
import { ElemType, encodeModel, initializer, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { EMBED_ROWS, embedSumReference } from '../scripts/build-models.js';
import { b64Fp32, directOrt, getBatch, maxAbsDiff, mlpFeatures, readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { flatten } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { Spawned } from './helpers/spawned.js';
import { deepMlpModel } from './helpers/slow-models.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Bulk batches under faults: behaviour that holds today and that no other
 * test pins down this precisely. Worker processes are the real
 * `npm run start:worker`, SIGKILLed through their process group.
 */

/** embed-sum with a variable number of ids a row: vector[N,3] = sum of table rows ids[N,len]. An id past the table makes ONNX Runtime throw. */
function embedVarModel(): Uint8Array {
  const table = Array.from({ length: EMBED_ROWS }, (_, i) => [i, 2 * i, -i]).flat();
  return encodeModel({
    name: 'embed_var',
    inputs: [valueInfo('ids', ElemType.INT64, ['batch', 'len'])],
    outputs: [valueInfo('vector', ElemType.FLOAT, ['batch', 3])],
    initializers: [initializer('table', ElemType.FLOAT, [EMBED_ROWS, 3], table), initializer('axes', ElemType.INT64, [1], [1])],
    nodes: [node('Gather', ['table', 'ids'], ['rows'], { axis: 0 }), node('ReduceSum', ['rows', 'axes'], ['vector'], { keepdims: 0 })],
  });
}

const ROWS = 3 * 2048;
const slowLines = (tag: string) => toNdjson(Array.from({ length: ROWS }, (_, i) => ({ custom_id: `${tag}-${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })));

/** Every item once, in order, custom id kept, and the counts equal the lines. */
function expectWhole(lines: BatchResultLine[], batch: Batch, customId: (i: number) => string | null): void {
  expect(lines, 'result lines').to.have.length(batch.request_counts.total);
  lines.forEach((l, i) => {
    if (l.index !== i || l.custom_id !== customId(i)) expect.fail(`line ${i}: index ${l.index}, custom_id ${l.custom_id}`);
  });
  const by = (s: string) => lines.filter((l) => l.status === s).length;
  expect({ succeeded: by('succeeded'), failed: by('failed'), canceled: by('canceled') }).to.deep.equal({
    succeeded: batch.request_counts.succeeded,
    failed: batch.request_counts.failed,
    canceled: batch.request_counts.canceled,
  });
}

describe('batches: bulk batches with worker processes SIGKILLed', function () {
  this.timeout(180_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  const spawned: Spawned[] = [];

  before(async () => {
    repo = tempModelRepo({ slow: { onnx: deepMlpModel(), config: { max_batch_size: 256, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
  });
  afterEach(() => {
    for (const s of spawned.splice(0)) s.kill();
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  async function startWorker(): Promise<Spawned> {
    const w = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_LOCK_MS: '2000', WORKER_METRICS_PORT: '0' });
    spawned.push(w);
    await w.waitForLog('worker started', 60_000);
    return w;
  }
  const queueRef = () => bulkQueue(p.prefix, 'slow', '1');
  const locked = async () => redis.llen(`${queueRef().prefix}:${queueRef().name}:active`);
  const midBatch = (id: string) =>
    waitUntil(
      async () => {
        const done = (await getBatch(p, id)).request_counts.succeeded;
        return done > 0 && done < ROWS && (await locked()) > 0;
      },
      60_000,
      'the worker to be in the middle of the batch (a chunk done, another locked)',
    );

  it('a worker SIGKILLed mid-chunk: another runs the chunk again; every row succeeds once, in order, right', async () => {
    const first = await startWorker();
    const batch = await submitBatch(p, { ndjson: slowLines('k'), query: 'model=slow' });
    await midBatch(batch.id);
    first.signalGroup('SIGKILL');
    await first.exit(10_000);
    await startWorker();
    const ended = await waitForBatchEnd(p, batch.id, 120_000);
    expect(ended.status).to.equal('completed');
    expect(ended.request_counts).to.deep.equal({ total: ROWS, succeeded: ROWS, failed: 0, canceled: 0 });
    const lines = await readResults(p, batch.id);
    expectWhole(lines, ended, (i) => `k-${i}`);
    const sample = [0, 2047, 2048, 4095, ROWS - 1];
    const direct = await directOrt(p.gateway.models.resolve('slow'), sample.map((i) => mlpFeatures(i)));
    sample.forEach((i, k) => expect(maxAbsDiff((lines[i]!.output as { probabilities: number[] }).probabilities, direct[k]!), `row ${i}`).to.be.at.most(1e-5));
  });

  it('a batch canceled while its chunk is locked by a dead worker: final at once, the stalled chunk is skipped, nothing left queued', async () => {
    const first = await startWorker();
    const batch = await submitBatch(p, { ndjson: slowLines('c'), query: 'model=slow' });
    await midBatch(batch.id);
    first.signalGroup('SIGKILL');
    await first.exit(10_000);
    const res = await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
    expect(res.status).to.equal(200);
    const canceled = (await res.json()) as Batch;
    expect(canceled.status).to.equal('canceled');
    const c = canceled.request_counts;
    expect(c.total).to.equal(ROWS);
    expect(c.succeeded + c.failed + c.canceled).to.equal(ROWS);
    expect(c.canceled).to.be.greaterThan(0);
    // A new worker: the dead one's chunks stall back into the queue, and are skipped (their batch has ended).
    await startWorker();
    const queue = new Queue(queueRef().name, { connection: redis, prefix: queueRef().prefix });
    try {
      await waitUntil(async () => {
        const n = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        return Object.values(n).every((x) => x === 0);
      }, 30_000, 'the canceled batch\'s chunks to leave the bulk queue');
    } finally {
      await queue.close();
    }
    const after = await getBatch(p, batch.id);
    expect(after.status).to.equal('canceled');
    expect(after.request_counts, 'counts after the stalled chunk was picked up again').to.deep.equal(c);
    expectWhole(await readResults(p, batch.id), after, (i) => `c-${i}`);
  });
});

describe('batches: ONNX Runtime throwing inside bulk chunks', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  before(async () => {
    repo = tempModelRepo({
      'always-fails': { from: path.join(FIXTURE_MODELS, 'always-fails') },
      'embed-var': { onnx: embedVarModel(), config: { max_batch_size: 8, max_delay_ms: 2 } },
    });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it('a model that throws on every run: every valid row fails inference_failed, invalid ones keep their error, the batch completes', async () => {
    const n = 2048 + 300;
    const items = Array.from({ length: n }, (_, i) => (i === 7 ? 'nope' : { custom_id: `a${i}`, input: { x: [i, i + 1] } }));
    const batch = await submitBatch(p, { ndjson: toNdjson(items), query: 'model=always-fails' });
    const ended = await waitForBatchEnd(p, batch.id, 45_000);
    expect(ended.status).to.equal('completed');
    expect(ended.request_counts).to.deep.equal({ total: n, succeeded: 0, failed: n, canceled: 0 });
    const lines = await readResults(p, batch.id);
    expectWhole(lines, ended, (i) => (i === 7 ? null : `a${i}`));
    expect(lines[7]!.error!.code).to.equal('invalid_json');
    for (const l of lines) if (l.index !== 7) expect(l.error!.code, `line ${l.index}`).to.equal('inference_failed');
  });

  it('poison rows among rows of different lengths: only they fail, each other row is right, every line in order', async () => {
    const n = 2048 + 500; // two chunks
    const poison = new Set([3, 100, 2047, 2048, 2400]);
    const idsOf = (i: number): number[] => (poison.has(i) ? [1, EMBED_ROWS + (i % 3), 2] : Array.from({ length: 1 + (i % 5) }, (_, k) => (i * 3 + k) % EMBED_ROWS));
    const batch = await submitBatch(p, { ndjson: toNdjson(Array.from({ length: n }, (_, i) => ({ custom_id: `v${i}`, input: { ids: idsOf(i) } }))), query: 'model=embed-var' });
    const ended = await waitForBatchEnd(p, batch.id, 45_000);
    expect(ended.request_counts).to.deep.equal({ total: n, succeeded: n - poison.size, failed: poison.size, canceled: 0 });
    const lines = await readResults(p, batch.id);
    expectWhole(lines, ended, (i) => `v${i}`);
    for (const l of lines) {
      if (poison.has(l.index)) {
        expect(l.status, `line ${l.index}`).to.equal('failed');
        expect(l.error!.code).to.equal('inference_failed');
      } else {
        expect(l.status, `line ${l.index}: ${JSON.stringify(l.error)}`).to.equal('succeeded');
        expect(flatten((l.output as Record<string, unknown>).vector), `line ${l.index}`).to.deep.equal(embedSumReference(idsOf(l.index)));
      }
    }
  });
});
