import { expect } from 'chai';
import type { Batch, BatchResultLine } from '@infer/contract';
import { expectProblem } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * decodeNested (packages/tensors/src/decode.ts) infers a nested array's shape from the FIRST element at
 * each depth and allocates a typed array of that many elements BEFORE checking that the array is not
 * ragged, and without the 2^28-element cap the object forms get. For a model input with variable
 * dimensions (ocr-cls: x FP32[3,-1,-1]) a ~160 KB body whose first row is 40,000 long and whose first
 * plane holds 40,000 entries (all but one a bare 0) declares 3 × 40,000 × 40,000 elements: V8 throws a
 * RangeError, which is not an AppError, so
 *  - POST /v1/jobs answers 500 internal_error (and logs an "unhandled error") instead of 422;
 *  - a batch holding such an item fails WHOLE with 500, instead of that one item failing
 *    (docs/api.md: "an item that ... does not fit the model does not fail the request").
 * Slightly smaller sizes (3 × 16,384²) make the gateway allocate 3.2 GB for a 64 KB body.
 * docs/api.md: "nested arrays must not be ragged" — a 422 invalid_input naming the input.
 */
const N = 40_000;
const ragged = `[[[${new Array(N).fill(0).join(',')}]${',0'.repeat(N - 1)}],0,0]`;
const goodX = JSON.stringify([0, 1, 2].map(() => [0, 1].map(() => [0.1, 0.2, 0.3, 0.4])));

describe('security: a ragged nested array implying a huge shape is a 422, not a 500', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  it('POST /v1/jobs: 422 invalid_input', async () => {
    const body = `{"model":"ocr-cls","input":{"x":${ragged}}}`;
    expect(body.length).to.be.below(200_000);
    const problem = await expectProblem(await p.api('/v1/jobs', { method: 'POST', body }), 422, 'invalid_input');
    expect(problem.detail).to.include('input "x"');
  });

  const expectOneFailed = async (res: Response) => {
    const text = await res.text();
    expect(res.status, text).to.equal(202);
    const batch = JSON.parse(text) as Batch;
    expect(batch.request_counts.total).to.equal(2);
    expect(batch.request_counts.failed).to.equal(1);
    // The bad item is listed as failed invalid_input once the batch ends (cancel: nothing runs without a worker).
    await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
    const lines = await waitUntil(async () => {
      const r = await p.api(`/v1/batches/${batch.id}/results`);
      return r.status === 200 ? ((await r.text()).trim().split('\n').map((l) => JSON.parse(l) as BatchResultLine)) : null;
    }, 10_000, 'results');
    expect(lines[0]!.status).to.equal('failed');
    expect(lines[0]!.error!.code).to.equal('invalid_input');
  };

  it('NDJSON batch: the item fails alone (202), the upload is not refused', async () => {
    const body = `{"custom_id":"bad","input":{"x":${ragged}}}\n{"custom_id":"good","input":{"x":${goodX}}}\n`;
    await expectOneFailed(await p.api('/v1/batches?model=ocr-cls', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body }));
  });

  it('JSON batch: the item fails alone (202), the batch is not refused', async () => {
    const body = `{"model":"ocr-cls","items":[{"custom_id":"bad","input":{"x":${ragged}}},{"custom_id":"good","input":{"x":${goodX}}}]}`;
    await expectOneFailed(await p.api('/v1/batches', { method: 'POST', body }));
  });
});
