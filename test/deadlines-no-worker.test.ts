import { expect } from 'chai';
import { Redis } from 'ioredis';
import { decodeRecord, JobStore } from '@infer/job-store';
import { mlpFeatures } from './helpers/batches.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, `Cancel-After`: a job still queued at its deadline ends
 * `canceled` (`deadline_exceeded`) within a second, whether or not a worker
 * is running. With the whole fleet down (restarting, scaled to zero), the
 * gateways sweep the queues in the workers' stead: a client that never
 * reads its jobs again must not find its tenant's TENANT_MAX_QUEUED (or the
 * queue's MAX_QUEUE_DEPTH) still held by jobs long past their deadlines.
 */
describe('deadlines: jobs past their Cancel-After deadline while no worker is live', function () {
  this.timeout(60_000);
  const CAP = 3;
  let p: TestPlatform | undefined;
  let redis: Redis | undefined;

  afterEach(async () => {
    redis?.disconnect();
    redis = undefined;
    await p?.close();
    p = undefined;
  });

  const submit = (i: number, headers: Record<string, string> = {}) =>
    p!.api('/v1/jobs', { method: 'POST', headers, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });

  it('end within a second without being read, and free their place in the tenant quota', async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: String(CAP) } });
    const ids: string[] = [];
    for (let i = 0; i < CAP; i++) {
      const res = await submit(i, { 'cancel-after': '300ms' });
      expect(res.status).to.equal(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    // The tenant is at its cap: one more is refused.
    expect((await submit(CAP)).status).to.equal(429);

    // Read the records from Redis directly: a read through the gateway would end a job past its deadline itself.
    redis = new Redis(TEST_REDIS_URL);
    const store = new JobStore(redis, { prefix: p.prefix, resultTtlMs: 60_000 });
    const platform = p;
    await waitUntil(
      async () => {
        for (const id of ids) if ((await store.read(id)).kind !== 'ended') return false;
        return true;
      },
      10_000,
      'every job past its deadline to have ended, unread, with no worker running',
    );
    for (const id of ids) {
      const lookup = await store.read(id);
      if (lookup.kind !== 'ended') throw new Error(`job ${id} is ${lookup.kind}`);
      const { header } = decodeRecord(lookup.record);
      expect(header.s, `job ${id}`).to.equal('canceled');
    }
    // Their places are free again.
    const res = await submit(CAP + 1);
    expect(res.status, await res.clone().text()).to.equal(202);
    const ended = (await (await platform.api(`/v1/jobs/${ids[0]}`)).json()) as { status: string; error: { code: string } | null };
    expect(ended.status).to.equal('canceled');
    expect(ended.error?.code).to.equal('deadline_exceeded');
  });
});
