import { expect } from 'chai';
import { Queue } from 'bullmq';
import { bulkQueue, type Batch, type BatchResultLine } from '@infer/contract';
import { expectResultsWhole, getBatch, readResults, submitBatch } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { ElemType, encodeModel, initializer, node, valueInfo } from '../scripts/lib/onnx-builder.js';

const WIDTH = 16384;

/**
 * x[N, 16384] → y[N, 1] = sum of the row (and z, the sum of 150 Tanh over it: real time a run). 64 KiB a
 * row, so a chunk (1 MiB) holds 16 rows.
 */
function wideSumModel(): Uint8Array {
  const nodes = [node('ReduceSum', ['x', 'ax'], ['y'], { keepdims: 1 }), node('Tanh', ['x'], ['t0'])];
  for (let k = 1; k < 150; k++) nodes.push(node('Tanh', [`t${k - 1}`], [`t${k}`]));
  nodes.push(node('ReduceSum', ['t149', 'ax'], ['z'], { keepdims: 1 }));
  return encodeModel({
    name: 'wide',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', WIDTH])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', 1]), valueInfo('z', ElemType.FLOAT, ['batch', 1])],
    initializers: [initializer('ax', ElemType.INT64, [1], [1])],
    nodes,
  });
}

/**
 * cancel racing the chunks a worker is running and writing. Whatever moment the
 * cancel lands, docs/api.md: "the counts and the results are final from this moment" — the 200's counts are
 * the batch's for good, the file has each item once in order, a second download is the same file, and every
 * succeeded line holds its own row's output.
 */
describe('cancel landing while chunks run', function () {
  this.timeout(180_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let queue: Queue;
  before(async () => {
    repo = tempModelRepo({ wide: { onnx: wideSumModel(), config: { max_batch_size: 4, max_delay_ms: 1 } } });
    p = await startPlatform({ models: repo.root });
    const ref = bulkQueue(p.prefix, 'wide', '1');
    queue = new Queue(ref.name, { connection: { url: TEST_REDIS_URL }, prefix: ref.prefix });
  });
  after(async () => {
    await queue.close();
    await p.close();
    repo.remove();
  });

  const ROWS = 160;
  const body = () => {
    let s = '';
    for (let i = 0; i < ROWS; i++) s += `{"custom_id":"r${i}","input":{"x":[${new Array(WIDTH).fill(i % 7).join(',')}]}}\n`;
    return s;
  };

  for (let round = 0; round < 6; round++) {
    it(`round ${round}: the cancel's counts stay final, the file is whole, stable and right`, async () => {
      const batch = await submitBatch(p, { ndjson: body(), query: 'model=wide' });
      expect(batch.request_counts.total).to.equal(ROWS);
      // Cancel after some chunks have been written (round 0: at once).
      await waitUntil(async () => ((await getBatch(p, batch.id)).request_counts.succeeded >= round * 16 ? true : null), 30_000, 'chunks to run');
      const res = await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
      const text = await res.text();
      if (res.status === 409) return; // completed first: nothing to race
      expect(res.status, text).to.equal(200);
      const canceled = JSON.parse(text) as Batch;
      const first = await readResults(p, batch.id);
      // The worker lets go of what it held.
      await waitUntil(async () => {
        const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
        return Object.values(c).every((count) => count === 0) ? true : null;
      }, 30_000, 'the bulk queue to be empty');
      const later = await getBatch(p, batch.id);
      expect(later.request_counts, 'counts after the worker let go').to.deep.equal(canceled.request_counts);
      expect(later.status).to.equal('canceled');
      const second = await readResults(p, batch.id);
      expect(second).to.deep.equal(first);
      expectResultsWhole(second, later);
      second.forEach((l: BatchResultLine, i) => {
        expect(l.custom_id).to.equal(`r${i}`);
        if (l.status === 'succeeded') expect((l.output as { y: number[] }).y).to.deep.equal([WIDTH * (i % 7)]);
        else expect(l.status).to.equal('canceled');
      });
    });
  }
});
