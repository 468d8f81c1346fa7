import { expect } from 'chai';
import { Redis } from 'ioredis';
import { keys, type BatchList } from '@infer/contract';
import { mlpFeatures, streamedUpload, submitBatch, toNdjson, uploadNdjson } from './helpers/batches.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md "GET /v1/batches": "For the next page pass `last_id` as `after` while `has_more` is
 * true." docs/batches.md: an upload that fails keeps nothing ("send it again").
 */
describe('batches: paging the batch list while an upload is in flight', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p.close();
  });

  it('the next page after a listing taken during an upload that then failed is 200, not 400', async () => {
    const older: string[] = [];
    for (let i = 0; i < 2; i++) older.push((await submitBatch(p, { json: { model: 'mlp', items: [{ input: { features: mlpFeatures(i) } }] } })).id);

    // An upload in flight (not yet accepted: no 202, the client has no id).
    const { req, answer } = streamedUpload(p);
    req.write(toNdjson([{ custom_id: 'x', input: { features: mlpFeatures(9) } }]));
    // A data team's scheduler pages through its batches meanwhile.
    const first = await waitUntil(async () => {
      const page = (await (await p.api('/v1/batches?limit=1')).json()) as BatchList;
      return page.data.length === 1 && !older.includes(page.data[0]!.id) ? page : null;
    }, 10_000, 'a listing that shows the upload in flight');
    expect(first.has_more).to.equal(true);
    const cursor = first.last_id!;

    // The upload fails (the client goes away): nothing of it is kept.
    req.destroy();
    await answer;
    await waitUntil(async () => (await p.api(`/v1/batches/${cursor}`)).status === 404, 10_000, 'the failed upload to be discarded');
    // Another client of the tenant lists its batches meanwhile: its entry is gone, its place kept.
    expect((await p.api('/v1/batches?limit=10')).status).to.equal(200);

    const next = await p.api(`/v1/batches?limit=1&after=${cursor}`);
    const body = await next.text();
    expect(next.status, `next page with after=last_id of the previous page: ${body}`).to.equal(200);
    expect((JSON.parse(body) as BatchList).data.map((b) => b.id)).to.deep.equal([older[1]]);
  });

  it('failed uploads leave no entry in the tenant\'s index: a listing does not walk them', async () => {
    const before = await redis.zcard(keys(p.prefix).tenantBatches('tenant-a'));
    // An empty body is enough: the batch is recorded before a byte of it is read, and discarded.
    const answers = await Promise.all(Array.from({ length: 20 }, () => uploadNdjson(p, '')));
    for (const a of answers) expect(a.status, await a.text()).to.equal(400);
    expect(await redis.zcard(keys(p.prefix).tenantBatches('tenant-a'))).to.equal(before);
  });
});
