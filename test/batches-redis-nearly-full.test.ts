import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { BatchList } from '@infer/contract';
import { UPLOAD_MEMORY_LIMIT } from '../apps/gateway/src/batches/redis-memory.js';
import { expectProblem, expectRetryAfter } from './helpers/jobs.js';
import { mlpFeatures, toNdjson, uploadNdjson, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/operations.md (When Redis is full): batch chunks are taken and
 * completed by BullMQ's scripts, which a full Redis refuses, so batch inputs
 * that filled Redis would never drain. Uploads stop short of it: above 90% of
 * `maxmemory` one is refused with 503 (nothing kept), and accepted again
 * once there is room. Interactive jobs are not held to it.
 */
describe('batches: uploads when Redis is nearly full', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let p: TestPlatform;
  let admin: Redis;
  before(async () => {
    redis = await OwnRedis.start(['--maxmemory-policy', 'noeviction']);
    p = await startPlatform({ redisUrl: redis.url });
    admin = new Redis(redis.url);
  });
  after(async () => {
    admin?.disconnect();
    await p?.close();
    await redis?.stop();
  });

  const used = async () => Number(/^used_memory:(\d+)/m.exec(await admin.info('memory'))![1]);
  const rows = toNdjson(Array.from({ length: 20 }, (_, i) => ({ input: { features: mlpFeatures(i) } })));

  it('refuses an upload with 503 (Retry-After, nothing kept) above 90% of maxmemory, takes jobs still, and uploads again once there is room', async () => {
    // Used memory at 95% of the limit.
    await admin.config('SET', 'maxmemory', String(Math.ceil((await used()) / 0.95)));
    // This gateway has not read Redis's memory yet: it reads it now.
    const refused = await uploadNdjson(p, rows);
    await expectProblem(refused, 503, 'unavailable');
    expect(expectRetryAfter(refused)).to.equal(5);
    expect(((await (await p.api('/v1/batches')).json()) as BatchList).data).to.deep.equal([]);
    const job = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(1) } }), headers: { prefer: 'wait=10' } });
    expect(job.status, 'an interactive job below the limit itself').to.equal(200);

    // Room again (maxmemory raised, or the backlog drained): accepted within a second.
    await admin.config('SET', 'maxmemory', String(Math.ceil((await used()) / (UPLOAD_MEMORY_LIMIT / 3))));
    const accepted = await waitUntil(
      async () => {
        const res = await uploadNdjson(p, rows);
        return res.status === 202 ? ((await res.json()) as { id: string }) : undefined;
      },
      5000,
      'an upload to be accepted again',
    );
    expect((await waitForBatchEnd(p, accepted.id)).status).to.equal('completed');
  });
});
