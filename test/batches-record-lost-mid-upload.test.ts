import { expect } from 'chai';
import { Redis } from 'ioredis';
import { keys, type BatchList } from '@infer/contract';
import { b64Fp32, mlpFeatures, streamedUpload } from './helpers/batches.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * the batch's record vanishes from Redis while its upload is still streaming in
 * (Redis restarted empty, a key evicted under an allkeys-* policy, an operator's DEL). The upload cannot
 * go on: docs/api.md answers a Redis failure with 503 `unavailable` ("send it again") and an upload is all
 * or nothing: a refused one leaves nothing behind. `404 batch_not_found` is never an answer of
 * `POST /v1/batches` (its 404s are model_not_found and version_not_found).
 */
describe('the record of a batch vanishes mid-upload', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis.disconnect();
    await p.close();
  });

  const line = (i: number) => JSON.stringify({ custom_id: `u${i}`, input: { features: b64Fp32(mlpFeatures(i)) } }) + '\n';
  const lines = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => line(from + k)).join('');

  it('is not answered 404 batch_not_found to the POST, and leaves none of its chunks\' inputs in Redis', async () => {
    const { req, answer } = streamedUpload(p);
    req.write(lines(0, 2 * 2048 + 5));
    const seen = await waitUntil(async () => {
      const list = (await (await p.api('/v1/batches')).json()) as BatchList;
      const b = list.data[0];
      return b && b.request_counts.total >= 2 * 2048 ? b : null;
    }, 30_000, 'the upload to register its first chunks');
    const k = keys(p.prefix);
    // The record goes (as a restart without persistence or an eviction would take it); the rest of the body follows.
    expect(await redis.del(k.batch(seen.id))).to.equal(1);
    req.end(lines(2 * 2048 + 5, 4 * 2048));
    const { status, body } = await answer;
    const code = status > 0 ? (JSON.parse(body) as { code?: string }).code : body;
    const left = { inputs: await redis.exists(k.batchInputs(seen.id)), pending: await redis.exists(k.batchPending(seen.id)) };
    expect({ status, code, left }).to.deep.equal({ status: 503, code: 'unavailable', left: { inputs: 0, pending: 0 } });
  });
});
