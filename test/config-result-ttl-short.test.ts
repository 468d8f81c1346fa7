import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Job } from '@infer/contract';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { mlpFeatures, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * RESULT_TTL_SECONDS small, as an operator short of memory sets it (README:
 * "how long ended jobs and batches stay readable"). An ended job, its
 * delivery log and an ended batch stay readable for the TTL (not less), then
 * go; an Idempotency-Key outlives its job no longer than the job's record
 * (docs/api.md); nothing of the job is left in Redis without an expiry.
 */
const TTL_S = 3;

/** Poll `read` until it answers 404; returns the epoch ms of the first 404. */
async function firstGone(read: () => Promise<Response>, timeoutMs: number, what: string): Promise<number> {
  return waitUntil(
    async () => {
      const res = await read();
      await res.arrayBuffer();
      return res.status === 404 ? Date.now() : 0;
    },
    timeoutMs,
    what,
  );
}

describe('config: RESULT_TTL_SECONDS small', function () {
  this.timeout(90_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver;
  let redis: Redis;

  before(async () => {
    hooks = await startWebhookReceiver();
    p = await startPlatform({ env: { RESULT_TTL_SECONDS: String(TTL_S), WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100' } });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    await hooks?.close();
  });

  it('an ended job and its delivery log stay readable for RESULT_TTL_SECONDS, then go; its Idempotency-Key then makes a new job; none of its keys stays', async () => {
    const body = JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(1) }, webhook: hooks.url });
    const submit = () => p.api('/v1/jobs', { method: 'POST', body, headers: { prefer: 'wait=20', 'idempotency-key': 'ttl-key-1' } });
    const res = await submit();
    const job = (await res.json()) as Job;
    expect(res.status).to.equal(200);
    const endedAt = Date.parse(job.completed_at!);
    await waitUntil(() => hooks.deliveries.length >= 1, 20_000, 'the job.completed delivery');
    const eventId = String((hooks.deliveries[0]!.headers['webhook-id'] as string) ?? '');
    const delivered = await waitUntil(
      async () => {
        const r = await p.api(`/v1/webhook_deliveries/${eventId}`);
        if (r.status !== 200) return null;
        const d = (await r.json()) as { state: string; attempts: Array<{ timestamp: string }> };
        return d.state === 'succeeded' ? d : null;
      },
      10_000,
      'the delivery recorded succeeded',
    );
    const lastAttemptAt = Date.parse(delivered.attempts.at(-1)!.timestamp);

    const jobGone = await firstGone(() => p.api(`/v1/jobs/${job.id}`), (TTL_S + 10) * 1000, 'the job to expire');
    // Readable for RESULT_TTL_SECONDS after it ended (a little slack for Redis' expiry resolution).
    expect(jobGone - endedAt, 'ms the job stayed readable after it ended').to.be.at.least(TTL_S * 1000 - 250);
    expect(jobGone - endedAt).to.be.at.most(TTL_S * 1000 + 3000);

    const logGone = await firstGone(() => p.api(`/v1/webhook_deliveries/${eventId}`), (TTL_S + 10) * 1000, 'the delivery log to expire');
    expect(logGone - lastAttemptAt, 'ms the delivery log stayed after its last attempt').to.be.at.least(TTL_S * 1000 - 250);
    expect(logGone - lastAttemptAt).to.be.at.most(TTL_S * 1000 + 3000);

    // The key outlives its job no longer than the job's record: a new job now, not a replay, not a 409.
    const again = await submit();
    const second = (await again.json()) as Job;
    expect({ status: again.status, replayed: again.headers.get('idempotent-replayed'), sameId: second.id === job.id }).to.deep.equal({
      status: 200,
      replayed: null,
      sameId: false,
    });

    // Nothing naming the first job or its event is kept past the documented bound (architecture.md: the
    // delivery keys live RESULT_TTL_SECONDS, or the retry schedule + 10 min when longer).
    const keys = await redis.keys(`${p.prefix}:*`);
    const left = keys.filter((k) => k.includes(job.id) || k.includes(eventId));
    const unbounded = [];
    for (const k of left) {
      const ttl = await redis.pttl(k);
      if (ttl < 0 || ttl > 100 + 10 * 60_000) unbounded.push(`${k} pttl=${ttl}`);
    }
    expect(unbounded, 'keys of the expired job without their bound').to.deep.equal([]);
  });

  it('an ended batch stays readable for RESULT_TTL_SECONDS after it ended, then its record and results go', async () => {
    const batch = await submitBatch(p, { json: { model: 'mlp', items: [0, 1, 2].map((i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } })) } });
    const ended = await waitForBatchEnd(p, batch.id, 30_000);
    const endedAt = Date.parse(ended.completed_at!);
    const gone = await firstGone(() => p.api(`/v1/batches/${batch.id}`), (TTL_S + 10) * 1000, 'the batch to expire');
    expect(gone - endedAt, 'ms the batch stayed readable after it ended').to.be.at.least(TTL_S * 1000 - 250);
    expect(gone - endedAt).to.be.at.most(TTL_S * 1000 + 3000);
    const results = await p.api(`/v1/batches/${batch.id}/results`);
    await results.arrayBuffer();
    expect(results.status).to.equal(404);
    const keys = await redis.keys(`${p.prefix}:*`);
    expect(keys.filter((k) => k.includes(batch.id) && !k.endsWith(':gone')), 'keys of the expired batch').to.deep.equal([]);
  });
});
