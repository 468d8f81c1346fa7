import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { webhookQueue } from '@infer/contract';
import type { WebhookDelivery } from '@infer/webhooks';
import { SHIPPED_MODELS, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * docs/api.md, Delivery:
 * - "A worker killed mid-attempt (no shutdown) loses its lock; the attempt
 *   runs again on another worker once the lock has lapsed ..., however many
 *   times that happens up to 20: delivery is at least once."
 * - "A delivery whose run fails for good for a reason of the platform's own
 *   ... is marked `failed`, so it can be resent, rather than staying
 *   `pending`."
 * and "one still `pending` is `409 conflict`" for a resend.
 *
 * A delivery run whose worker died a 21st time is failed for good by BullMQ
 * ("job stalled more than allowable limit"). Its event must then end
 * `failed` (resendable), not stay `pending` forever with every resend
 * refused. The 20 earlier deaths are written into the run's stalled counter
 * (BullMQ's `stc`), as 20 earlier SIGKILLs would have left it; the 21st is
 * a real SIGKILL of a worker process mid-attempt.
 */
describe('webhooks: a delivery run that loses its worker past the stalled limit', function () {
  this.timeout(90_000);
  let p: TestPlatform;
  let receiver: WebhookReceiver;
  let spawned: Spawned | undefined;
  let redis: Redis;
  let queue: Queue;
  let queueConnection: Redis;

  before(async () => {
    const env = { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50', WORKER_LOCK_MS: '1000' };
    p = await startPlatform({ worker: false, env });
    // The first attempt hangs (its worker is killed during it); any later one is answered 200.
    receiver = await startWebhookReceiver((n) => (n === 1 ? 'hang' : 200));
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    queueConnection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    queue = new Queue(webhookQueue(p.prefix).name, { connection: queueConnection, prefix: webhookQueue(p.prefix).prefix });
    spawned = new Spawned('start:worker', {
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: p.prefix,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      WORKER_METRICS_PORT: '0',
      ...env,
    });
    await spawned.waitForLog('worker started', 60_000);
    await p.gateway.catalog.refresh();
  });
  after(async () => {
    spawned?.kill();
    await receiver.close();
    await queue.close();
    queueConnection.disconnect();
    await p.close();
    redis.disconnect();
  });

  it('ends the event failed (resendable), not pending forever', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook: receiver.url }) });
    expect(res.status).to.equal(202);
    const job = (await res.json()) as { id: string };
    const eventId = await waitUntil(() => receiver.deliveries[0]?.headers['webhook-id'] as string | undefined, 20_000, 'the first attempt in flight');

    // 20 earlier worker deaths during this run, as BullMQ counts them; the 21st now.
    const ref = webhookQueue(p.prefix);
    expect(await redis.exists(`${ref.prefix}:${ref.name}:${eventId}`)).to.equal(1);
    await redis.hset(`${ref.prefix}:${ref.name}:${eventId}`, 'stc', '20');
    spawned!.kill();
    await spawned!.exit(10_000);
    spawned = undefined;

    await p.startWorker();
    // BullMQ fails the run for good once the lock has lapsed and the stalled check has seen it twice.
    await waitUntil(async () => (await queue.getJobState(eventId)) === 'failed', 20_000, 'the run to be failed for good by BullMQ');
    const failedReason = (await queue.getJob(eventId))?.failedReason;

    const read = async () => ((await (await p.api(`/v1/jobs/${job.id}/webhook_deliveries`)).json()) as { data: WebhookDelivery[] }).data.find((d) => d.id === eventId)!;
    let d = await read();
    try {
      // The worker's 'failed' handler runs right after BullMQ fails the run: a short bound.
      d = await waitUntil(async () => {
        const x = await read();
        return x.state !== 'pending' ? x : undefined;
      }, 5000, 'the event to leave pending');
    } catch {
      /* judged below */
    }
    const resend = await p.api(`/v1/webhook_deliveries/${eventId}/resend`, { method: 'POST' });
    const seen = { bullmqRun: 'failed', failedReason, eventState: d.state, attempts: d.attempts.map((a) => [a.attempt, a.error]), resendAnswer: resend.status };
    expect(d.state, JSON.stringify(seen)).to.equal('failed');
    expect(resend.status, JSON.stringify(seen)).to.equal(202);
  });
});
