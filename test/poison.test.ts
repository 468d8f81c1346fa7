import path from 'node:path';
import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { EMBED_ROWS, embedSumReference } from '../scripts/build-models.js';
import { readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { flatten, pollJob, postJob, runJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * Poison inputs: valid by every check the gateway can make, yet ONNX Runtime
 * throws on them (an id past an embedding table). Only they fail; the
 * instances stacked with them succeed, as if run alone; the work is bounded.
 * The fixture embed-sum sums 4 rows of a 10-row table; always-fails throws
 * on every run.
 */

const idsOf = (seed: number): number[] => Array.from({ length: 4 }, (_, k) => (seed * 7 + k * 3) % EMBED_ROWS);
const poisonIds = (seed: number): number[] => [seed % EMBED_ROWS, EMBED_ROWS + (seed % 5), 1, 2];
const job = (ids: readonly number[]) => ({ model: 'embed-sum', input: { ids: [...ids] } });

/** Runs the worker made, by its own metrics: the count of infer_batch_size observations. */
async function runsOf(p: TestPlatform, model: string): Promise<number> {
  const text = await p.worker!.metrics.registry.getSingleMetricAsString('infer_batch_size');
  const m = new RegExp(`infer_batch_size_count\\{model="${model}",version="1"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

describe('poison inputs: only the bad instances fail', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  before(() => {
    repo = tempModelRepo({
      'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') },
      'always-fails': { from: path.join(FIXTURE_MODELS, 'always-fails') },
    });
  });
  beforeEach(async () => {
    p = await startPlatform({ models: repo.root, worker: false });
  });
  afterEach(async () => {
    await p?.close();
  });
  after(() => repo?.remove());

  it('isolates two poison jobs in a micro-batch of 12 by bisection: they fail with ONNX Runtime\'s message, the rest succeed as if run alone', async () => {
    // Queued before the worker starts, so all 12 are taken together into one micro-batch.
    const seeds = Array.from({ length: 12 }, (_, i) => i);
    const poisoned = new Set([3, 8]);
    const submitted = await Promise.all(seeds.map((s) => postJob(p, job(poisoned.has(s) ? poisonIds(s) : idsOf(s)))));
    await p.startWorker();
    const ended = await Promise.all(submitted.map((s) => pollJob(p, s.job.id)));
    for (const [i, j] of ended.entries()) {
      if (poisoned.has(i)) {
        expect(j.status, `job ${i}`).to.equal('failed');
        expect(j.error!.code).to.equal('inference_failed');
        expect(j.error!.message).to.match(/^ONNX Runtime failed: .*(out of|bounds|invalid)/i);
        expect(j.output).to.equal(null);
      } else {
        expect(j.status, `job ${i}: ${JSON.stringify(j.error)}`).to.equal('succeeded');
        expect(flatten((j.output as Record<string, unknown>).vector)).to.deep.equal(embedSumReference(idsOf(i)));
      }
    }
    // Identical to running each alone.
    for (const i of [0, 4, 11]) {
      const alone = await runJob(p, job(idsOf(i)));
      expect(alone.output, `job ${i} alone`).to.deep.equal(ended[i]!.output);
    }
    // Bounded: 1 run of 12, then the halves and quarters that hold a poison: far fewer than one run per job twice over.
    const runs = (await runsOf(p, 'embed-sum')) - 3;
    expect(runs, `runs for 12 jobs with 2 poisons`).to.be.within(3, 1 + 2 * 2 * Math.ceil(Math.log2(12)));
  });

  it('fails each job of a model that throws on every input once, with no retries', async () => {
    const submitted = await Promise.all(Array.from({ length: 8 }, (_, i) => postJob(p, { model: 'always-fails', input: { x: [i, i + 1] } })));
    await p.startWorker();
    const ended: Job[] = await Promise.all(submitted.map((s) => pollJob(p, s.job.id)));
    for (const j of ended) {
      expect(j.status).to.equal('failed');
      expect(j.error!.code).to.equal('inference_failed');
    }
    // Bisection of 8 all-poison instances: 1 + 2 + 4 + 8 runs at most, then nothing more (no retry).
    expect(await runsOf(p, 'always-fails')).to.be.at.most(15);
  });

  it('fails only the poison rows of a 5,000-line batch, with their line numbers; every other row succeeds', async () => {
    await p.startWorker();
    const poisonLines = new Set([17, 2500, 4999]);
    const lines = Array.from({ length: 5000 }, (_, i) => ({ custom_id: `r${i}`, input: { ids: poisonLines.has(i) ? poisonIds(i) : idsOf(i) } }));
    const batch = await submitBatch(p, { ndjson: toNdjson(lines), query: 'model=embed-sum' });
    const ended = await waitForBatchEnd(p, batch.id, 60_000);
    expect(ended.request_counts).to.deep.include({ total: 5000, succeeded: 4997, failed: 3 });
    const results = await readResults(p, batch.id);
    expect(results).to.have.length(5000);
    for (const r of results) {
      expect(r.custom_id).to.equal(`r${r.index}`);
      if (poisonLines.has(r.index)) {
        expect(r.status, `line ${r.index}`).to.equal('failed');
        expect(r.error!.code).to.equal('inference_failed');
      } else {
        expect(r.status, `line ${r.index}`).to.equal('succeeded');
        expect(flatten((r.output as Record<string, unknown>).vector)).to.deep.equal(embedSumReference(idsOf(r.index)));
      }
    }
  });
});
