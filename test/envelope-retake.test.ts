import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { EnvelopeQueue } from '@infer/job-store';
import { getJob, pollJob, postJob } from './helpers/jobs.js';
import { seededFloats } from './helpers/ort-reference.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * A job of an envelope canceled while queued, two canceled while a worker
 * holds it, then that worker dies and another takes the envelope again: each
 * job still ends exactly once (the canceled ones canceled, the rest
 * succeeded, one job.completed each), and the queue's counts end at zero.
 */

type JobEvent = { type: string; data: Job };
const body = (seed: number, extra: Record<string, unknown> = {}) => ({ model: 'mlp', version: '2', input: { features: Array.from(seededFloats(64, seed)) }, ...extra });

describe('an envelope partly canceled, then its worker dies', function () {
  this.timeout(40_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver<JobEvent>;
  before(async () => {
    hooks = await startWebhookReceiver();
    p = await startPlatform({ worker: false, env: { WORKER_LOCK_MS: '1000', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100,200' } });
  });
  after(async () => {
    await p?.close();
    await hooks?.close();
  });

  it('canceled jobs stay canceled, the rest succeed, each with exactly one job.completed', async () => {
    const submitted = await Promise.all(Array.from({ length: 8 }, (_, i) => postJob(p, body(700 + i, { webhook: hooks.url }))));
    const ids = submitted.map((s) => s.job.id);
    // Cancel one while queued.
    expect((await p.api(`/v1/jobs/${ids[1]}/cancel`, { method: 'POST' })).status).to.equal(200);
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const dead = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: 60_000 });
      const taken = await dead.fetch('dead-worker', 1000, 64, 64);
      expect(taken === 'paused' ? 0 : taken.envelopes.length).to.be.at.least(1);
      // Cancel two while "running" on the worker that dies.
      expect((await getJob(p, ids[3]!)).status).to.equal('running');
      expect((await p.api(`/v1/jobs/${ids[3]}/cancel`, { method: 'POST' })).status).to.equal(200);
      expect((await p.api(`/v1/jobs/${ids[6]}/cancel`, { method: 'POST' })).status).to.equal(200);
      const k = interactiveKeys(p.prefix, 'mlp', '2');
      expect(Number(await redis.get(k.queued))).to.equal(0);
    } finally {
      redis.disconnect();
    }
    await p.startWorker();
    const ended = await Promise.all(ids.map((id) => pollJob(p, id, 20_000)));
    const canceled = new Set([1, 3, 6]);
    ended.forEach((job, i) => expect(job.status, `job ${i}`).to.equal(canceled.has(i) ? 'canceled' : 'succeeded'));
    await waitUntil(() => hooks.deliveries.filter((d) => d.event.type === 'job.completed').length >= 8, 15_000, 'eight job.completed');
    // Nothing more comes: wait for the envelope and outbox to be gone.
    const check = new Redis(TEST_REDIS_URL);
    try {
      const k = interactiveKeys(p.prefix, 'mlp', '2');
      await waitUntil(async () => (await check.llen(k.outbox)) === 0 && (await check.llen(k.active)) === 0 && (await check.llen(k.wait)) === 0, 10_000, 'the queue to empty');
      expect(Number(await check.get(k.queued))).to.equal(0);
    } finally {
      check.disconnect();
    }
    const completed = hooks.deliveries.filter((d) => d.event.type === 'job.completed').map((d) => d.event.data);
    expect(completed.map((e) => e.id).sort()).to.deep.equal([...ids].sort());
    for (const e of completed) expect(e.status, e.id).to.equal(canceled.has(ids.indexOf(e.id)) ? 'canceled' : 'succeeded');
  });
});
