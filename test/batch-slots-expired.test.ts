import { expect } from 'chai';
import { getBatch, submitBatch, toNdjson, uploadNdjson } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { elapse, waitUntil } from './helpers/wait.js';

/**
 * TENANT_MAX_OPEN_BATCHES: a batch that ended and then expired (RESULT_TTL_SECONDS
 * after its end) is no longer open; its slot must be free for the next upload.
 */
describe('open-batch slot of an ended batch that has expired', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_OPEN_BATCHES: '1', RESULT_TTL_SECONDS: '1' } });
  });
  after(async () => {
    await p.close();
  });

  it('a completed batch gone after RESULT_TTL no longer holds the slot', async () => {
    // Only invalid lines: it completes at once, without a worker.
    const a = await submitBatch(p, { ndjson: toNdjson(['nope', 'nope']) });
    expect((await getBatch(p, a.id)).status).to.equal('completed');
    // Its record expires RESULT_TTL_SECONDS after its end.
    await elapse(1200, 'RESULT_TTL_SECONDS=1 runs out: the ended batch expires');
    await waitUntil(async () => (await p.api(`/v1/batches/${a.id}`)).status === 404, 5000, 'the batch to expire');
    const res = await uploadNdjson(p, toNdjson(['nope']));
    expect(res.status, 'a tenant with no open batch gets a slot').to.equal(202);
  });
});
