import { expect } from 'chai';
import { Redis } from 'ioredis';
import { BatchStore, UNENDED_BATCH_TTL_MS } from '@infer/batch-store';
import { keys, type BatchList } from '@infer/contract';
import { mlpFeatures, streamedUpload, submitBatch, toNdjson, uploadNdjson } from './helpers/batches.js';
import { deletePrefix, startPlatform, TEST_REDIS_URL, uniquePrefix, type TestPlatform } from './helpers/platform.js';
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

describe('batches: a cursor naming a batch whose index entry went', function () {
  let redis: Redis;
  let prefix: string;
  let store: BatchStore;
  const RESULT_TTL_MS = 60_000;
  const create = (id: string, createdAt: number) =>
    store.create({ id, tenant: 't', model: 'mlp', version: '1', createdAt, metadata: null, webhook: null, webhookEventsFilter: [] });
  const ids = (page: { records: Array<{ id: string }> } | null) => page?.records.map((r) => r.id);

  beforeEach(() => {
    redis = new Redis(TEST_REDIS_URL);
    prefix = uniquePrefix('cursor');
    store = new BatchStore(redis, { prefix, resultTtlMs: RESULT_TTL_MS });
  });
  afterEach(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('batches created in the same millisecond: the next page after one that expired repeats none of the page before', async () => {
    const at = Date.now();
    for (const id of ['b-1', 'b-2', 'b-3', 'b-4']) await create(id, at);
    const first = await store.list('t', 2);
    // Newest first, ties by id descending.
    expect(ids(first)).to.deep.equal(['b-4', 'b-3']);
    // The page's last batch expires, and a listing meets it: its entry goes, its place is kept.
    await redis.del(keys(prefix).batch('b-3'));
    expect(ids(await store.list('t', 10))).to.deep.equal(['b-4', 'b-2', 'b-1']);
    expect(await redis.zscore(keys(prefix).tenantBatches('t'), 'b-3')).to.equal(null);
    expect(ids(await store.list('t', 2, 'b-3'))).to.deep.equal(['b-2', 'b-1']);
  });

  it('batches dropped from the index for their age (at a later create) keep their place for a cursor', async () => {
    const old = Date.now() - UNENDED_BATCH_TTL_MS - RESULT_TTL_MS - 10_000;
    await create('old-1', old);
    await create('old-2', old + 1000);
    expect(ids(await store.list('t', 1))).to.deep.equal(['old-2']);
    await create('new', Date.now());
    expect(await redis.zcard(keys(prefix).tenantBatches('t')), 'the old entries were dropped').to.equal(1);
    // Not null (400 for the client, its cursor unknown): the page after it, empty.
    expect(await store.list('t', 1, 'old-2')).to.deep.equal({ records: [], hasMore: false });
  });
});
