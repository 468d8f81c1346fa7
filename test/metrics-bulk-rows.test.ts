import path from 'node:path';
import { expect } from 'chai';
import { EMBED_ROWS } from '../scripts/build-models.js';
import { submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { parse, value } from './helpers/prometheus.js';
import { waitUntil } from './helpers/wait.js';

/**
 * infer_bulk_rows_total (docs/operations.md), summed over the worker and the
 * gateway, against the batches' request_counts. An operator's failure ratio of bulk rows must see every
 * failed item, whatever made it fail: ONNX Runtime throwing on it (poison),
 * or an item that did not parse / fit the model (docs/batches.md: "it
 * becomes a failed item").
 */
const EMBED = { model: 'embed-sum', version: '1' };
const good = (seed: number): number[] => Array.from({ length: 4 }, (_, k) => (seed * 7 + k * 3) % EMBED_ROWS);
const poison = (seed: number): number[] => [seed % EMBED_ROWS, EMBED_ROWS + (seed % 5), 1, 2];

describe('metrics: bulk row counters agree with request_counts', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  before(async () => {
    repo = tempModelRepo({ 'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') } });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  const scrape = async (url: string) => parse(await (await fetch(`${url}/metrics`)).text());
  // The fleet's figure: the worker's rows and the gateway's (chunks it ended itself, with nothing to run).
  const rows = async () => {
    const [w, g] = await Promise.all([scrape(`http://127.0.0.1:${p.worker!.metricsPort}`), scrape(p.baseUrl)]);
    const sum = (status: string) => value(w, 'infer_bulk_rows_total', { ...EMBED, status }) + value(g, 'infer_bulk_rows_total', { ...EMBED, status });
    return { succeeded: sum('succeeded'), failed: sum('failed') };
  };

  it('counts poison rows (ONNX Runtime throws) as failed bulk rows', async () => {
    const before = await rows();
    const items = [good(1), poison(2), good(3), good(4)].map((ids, i) => ({ custom_id: `p${i}`, input: { ids } }));
    const batch = await submitBatch(p, { ndjson: toNdjson(items), query: 'model=embed-sum' });
    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.request_counts).to.include({ succeeded: 3, failed: 1 });
    const after = await waitUntil(async () => {
      const r = await rows();
      return r.succeeded - before.succeeded >= 3 ? r : null;
    }, 10_000, 'the rows to be counted');
    expect(after.succeeded - before.succeeded).to.equal(3);
    expect(after.failed - before.failed).to.equal(1);
  });

  it('counts items that failed because they did not parse or fit the model as failed bulk rows, as request_counts does', async () => {
    const before = await rows();
    // 3 good rows; one line that is not JSON, and one whose input does not fit the model.
    const body = toNdjson([
      { custom_id: 'a', input: { ids: good(5) } },
      '{not json',
      { custom_id: 'b', input: { nope: [1, 2, 3] } },
      { custom_id: 'c', input: { ids: good(6) } },
      { custom_id: 'd', input: { ids: good(7) } },
    ]);
    const batch = await submitBatch(p, { ndjson: body, query: 'model=embed-sum' });
    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.request_counts).to.include({ total: 5, succeeded: 3, failed: 2 });
    const after = await waitUntil(async () => {
      const r = await rows();
      return r.succeeded - before.succeeded >= 3 ? r : null;
    }, 10_000, 'the rows to be counted');
    expect(after.succeeded - before.succeeded, 'succeeded rows').to.equal(ended.request_counts.succeeded);
    expect(after.failed - before.failed, 'failed rows in infer_bulk_rows_total vs the batch\'s request_counts.failed').to.equal(ended.request_counts.failed);
  });

  it('counts a batch every item of which failed at upload (nothing to run: the gateway ends it)', async () => {
    const before = await rows();
    const batch = await submitBatch(p, { ndjson: toNdjson(['{not json', { custom_id: 'x', input: { nope: [1] } }]), query: 'model=embed-sum' });
    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.request_counts).to.include({ total: 2, succeeded: 0, failed: 2 });
    const after = await rows();
    expect(after.failed - before.failed).to.equal(2);
    expect(after.succeeded - before.succeeded).to.equal(0);
  });
});
