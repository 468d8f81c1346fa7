import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { listKeys } from './helpers/redis-keys.js';
import type { Job } from '@infer/contract';
import { FIXTURE_MODELS, SHIPPED_MODELS, startPlatform, TEST_REDIS_URL, OTHER_TENANT_KEY, type TestPlatform } from './helpers/platform.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { mlpFeatures, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { allGone, pollJob, postJob } from './helpers/jobs.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Redis key hygiene. A mixed workload on a short RESULT_TTL, then
 * every key left under the run's prefix, with its TTL, type and size.
 */
const TTL_S = 2;

describe('a mixed workload leaves no per-job keys without a bound', function () {
  this.timeout(180_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let hooks: WebhookReceiver;
  let redis: Redis;

  before(async () => {
    repo = tempModelRepo({
      mlp: { from: path.join(SHIPPED_MODELS, 'mlp') },
      'always-fails': { from: path.join(FIXTURE_MODELS, 'always-fails') },
    });
    hooks = await startWebhookReceiver();
    p = await startPlatform({
      models: repo.root,
      worker: false,
      env: { RESULT_TTL_SECONDS: String(TTL_S), WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100', TENANT_MAX_QUEUED: '10000' },
    });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    await hooks?.close();
    repo?.remove();
  });

  it('after every job and batch has expired, only a few fixed keys per queue are left without a TTL', async () => {
    const ids: string[] = [];
    const batchIds: string[] = [];
    const mlp = (i: number, extra: Record<string, unknown> = {}) => ({ model: 'mlp', input: { features: mlpFeatures(i) }, ...extra });

    // No worker yet: jobs to cancel, jobs past their Cancel-After, a batch to cancel.
    const toCancel = await Promise.all([0, 1, 2].map((i) => postJob(p, mlp(i, { webhook: hooks.url }))));
    for (const s of toCancel) {
      const res = await p.api(`/v1/jobs/${s.job.id}/cancel`, { method: 'POST' });
      await res.arrayBuffer();
      expect(res.status).to.equal(200);
      ids.push(s.job.id);
    }
    const deadlined = await Promise.all(
      [3, 4].map(async (i) => {
        const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(mlp(i)), headers: { 'cancel-after': '50ms' } });
        expect(res.status).to.equal(202);
        return ((await res.json()) as Job).id;
      }),
    );
    ids.push(...deadlined);
    for (const id of deadlined) expect((await pollJob(p, id, 15_000)).status).to.equal('canceled');
    const canceledBatch = await submitBatch(p, { json: { model: 'mlp', items: [0, 1].map((i) => ({ custom_id: `c${i}`, input: { features: mlpFeatures(i) } })), webhook: hooks.url } });
    batchIds.push(canceledBatch.id);
    const cres = await p.api(`/v1/batches/${canceledBatch.id}/cancel`, { method: 'POST' });
    await cres.arrayBuffer();

    await p.startWorker();

    // Interactive jobs: async, Prefer: wait, idempotent, with webhooks, another tenant, failing ones.
    const asyncJobs = await Promise.all([5, 6, 7, 8].map((i) => postJob(p, mlp(i))));
    ids.push(...asyncJobs.map((s) => s.job.id));
    const waited = await Promise.all([9, 10, 11].map((i) => postJob(p, mlp(i), { wait: 20 })));
    ids.push(...waited.map((s) => s.job.id));
    const other = await postJob(p, mlp(12), { wait: 20, key: OTHER_TENANT_KEY });
    ids.push(other.job.id);
    for (let i = 0; i < 3; i++) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(mlp(20 + i)), headers: { 'idempotency-key': `idem-key-${i}`, prefer: 'wait=20' } });
      const job = (await res.json()) as Job;
      ids.push(job.id);
    }
    const hooked = await Promise.all([30, 31].map((i) => postJob(p, mlp(i, { webhook: hooks.url }), { wait: 20 })));
    ids.push(...hooked.map((s) => s.job.id));
    const failing = await Promise.all([0, 1].map((i) => postJob(p, { model: 'always-fails', input: { x: [i, i + 1] }, webhook: hooks.url }, { wait: 20 })));
    ids.push(...failing.map((s) => s.job.id));
    for (const s of asyncJobs) await pollJob(p, s.job.id, 20_000);

    // Batches: JSON, NDJSON, with a webhook.
    const b1 = await submitBatch(p, { json: { model: 'mlp', items: [0, 1, 2].map((i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } })), webhook: hooks.url } });
    const b2 = await submitBatch(p, { ndjson: toNdjson([0, 1, 2, 3].map((i) => ({ custom_id: `n${i}`, input: { features: mlpFeatures(i) } }))) });
    batchIds.push(b1.id, b2.id);
    await waitForBatchEnd(p, b1.id, 30_000);
    await waitForBatchEnd(p, b2.id, 30_000);

    // Everything has ended: wait until every job record and batch record has expired.
    await waitUntil(
      () =>
        allGone(p, [
          ...ids.map((id) => (id === other.job.id ? { path: `/v1/jobs/${id}`, key: OTHER_TENANT_KEY } : `/v1/jobs/${id}`)),
          ...batchIds.map((id) => `/v1/batches/${id}`),
        ]),
      (TTL_S + 20) * 1000,
      'every job and batch to expire',
    );
    // Let the periodic sweeps and outbox drains have their turn (they run every few seconds): wait until
    // the set of keys without a TTL stops changing for two looks in a row.
    let last = '';
    let stable = 0;
    await waitUntil(
      async () => {
        const now = (await listKeys(redis, p.prefix)).filter((k) => k.pttl < 0).map((k) => `${k.key}:${k.size}`).join(',');
        stable = now === last ? stable + 1 : 0;
        last = now;
        return stable >= 8;
      },
      30_000,
      'the keys to settle',
    );

    const keys = await listKeys(redis, p.prefix);
    const names = [...ids, ...batchIds];
    const perWork = keys.filter((k) => names.some((n) => k.key.includes(n)));
    const unbounded = perWork.filter((k) => k.pttl < 0);
    expect(unbounded.map((k) => k.key), 'keys naming a job or batch without a TTL').to.deep.equal([]);
    // Envelope job hashes / locks / inputs keys of BullMQ (ids start with e).
    const envelopes = keys.filter((k) => /:e[A-Za-z0-9_-]{16}(:|$)/.test(k.key));
    expect(envelopes.map((k) => k.key), 'envelope keys left').to.deep.equal([]);
  });
});
