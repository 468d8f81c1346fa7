import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Job } from '@infer/contract';
import { JobStore, idempotencyDigest } from '@infer/job-store';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { mlpFeatures } from './helpers/batches.js';
import { waitUntil } from './helpers/wait.js';

/**
 * An Idempotency-Key's Redis key lives as long as it can replay its job: it
 * is claimed for 24 h, and once the job ends (run, canceled) it expires with
 * the job's record (RESULT_TTL_SECONDS). With a short result TTL and a key on
 * every request, keys kept 24 h would otherwise outweigh the results many
 * times over, deduplicating nothing.
 */
describe('Idempotency-Keys expire with their jobs', function () {
  this.timeout(60_000);
  const TTL_S = 2;
  let p: TestPlatform;
  let redis: Redis;

  before(async () => {
    p = await startPlatform({ env: { RESULT_TTL_SECONDS: String(TTL_S) } });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
  });

  const keyOf = (tenant: string, key: string) => `${p.prefix}:idempotency:${tenant}:${idempotencyDigest(key)}`;
  const submit = (key: string, i: number, prefer = 'wait=20') =>
    p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }), headers: { prefer, 'idempotency-key': key } });

  async function idempotencyKeys(): Promise<string[]> {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${p.prefix}:idempotency:*`, 'COUNT', 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    return found;
  }

  it('a job that ran: its key replays it while its record lives, and is gone once the record has expired', async () => {
    const n = 10;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await submit(`lifetime-${i}`, i);
      expect(res.status).to.equal(200);
      ids.push(((await res.json()) as Job).id);
    }
    // The last one's record has just been written: its key replays it.
    const last = `lifetime-${n - 1}`;
    const replay = await submit(last, n - 1);
    expect(replay.status).to.equal(200);
    expect(replay.headers.get('idempotent-replayed')).to.equal('true');
    expect(((await replay.json()) as Job).id).to.equal(ids[n - 1]);
    // Shortened once the job has ended (the worker sends it after the job's end): well under the 24 h of its claim.
    await waitUntil(async () => (await redis.pttl(keyOf('tenant-a', last))) <= TTL_S * 1000, 10_000, 'the key to expire with its record');

    await waitUntil(async () => (await idempotencyKeys()).length === 0, (TTL_S + 15) * 1000, 'every key to expire with its job');
    for (const id of ids) expect((await p.api(`/v1/jobs/${id}`)).status).to.equal(404);
    // A key whose job is gone replays nothing: the same key makes a new job.
    const again = await submit('lifetime-0', 0);
    expect(again.status).to.equal(200);
    expect(((await again.json()) as Job).id).to.not.equal(ids[0]);
  });

  it('a job canceled while queued: its key expires with the canceled record', async () => {
    await p.closeWorker();
    try {
      const res = await submit('lifetime-canceled', 1, 'wait=0');
      expect(res.status).to.equal(202);
      const { id } = (await res.json()) as Job;
      expect(await redis.pttl(keyOf('tenant-a', 'lifetime-canceled'))).to.be.greaterThan(3600_000);
      const canceled = await p.api(`/v1/jobs/${id}/cancel`, { method: 'POST' });
      expect(canceled.status).to.equal(200);
      expect(await redis.pttl(keyOf('tenant-a', 'lifetime-canceled'))).to.be.within(1, TTL_S * 1000);
    } finally {
      await p.startWorker();
    }
  });

  it('a key another job has taken over is not shortened by the end of the job that held it before', async () => {
    const store = new JobStore(redis, { prefix: p.prefix, resultTtlMs: TTL_S * 1000 });
    const claim = await store.claimIdempotencyKey('tenant-x', 'taken-over', 'job-new');
    expect(claim.owner).to.equal('job-new');
    await store.shortenIdempotencyKeys([{ id: 'job-old', tenant: 'tenant-x', created_at: 0, idempotency: idempotencyDigest('taken-over') }]);
    expect(await redis.pttl(keyOf('tenant-x', 'taken-over'))).to.be.greaterThan(3600_000);
    await store.shortenIdempotencyKeys([{ id: 'job-new', tenant: 'tenant-x', created_at: 0, idempotency: idempotencyDigest('taken-over') }]);
    expect(await redis.pttl(keyOf('tenant-x', 'taken-over'))).to.be.within(1, TTL_S * 1000);
  });
});
