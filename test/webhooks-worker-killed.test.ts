import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import type { WebhookDelivery } from '@infer/webhooks';
import { SHIPPED_MODELS, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';
import { startRawReceiver, type RawReceiver } from './helpers/webhook-receiver.js';

/**
 * docs/api.md, Delivery: "A worker killed mid-attempt (no shutdown) loses its
 * lock; the attempt runs again on another worker once the lock has lapsed
 * (within about twice WORKER_LOCK_MS) … delivery is at least once."
 * A real worker process, SIGKILLed (its whole group) while its attempt is
 * held open by the receiver.
 */

/** n-th request (from 1): 'hang' holds it open until close, a number answers it. */

describe('webhooks: a worker process SIGKILLed mid-attempt', function () {
  this.timeout(90_000);
  let p: TestPlatform;
  let receiver: RawReceiver;
  let spawned: Spawned | undefined;
  const env = { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '30000,30000', WORKER_LOCK_MS: '1000' };

  before(async () => {
    p = await startPlatform({ worker: false, env });
    receiver = await startRawReceiver((n) => (n === 1 ? 'hang' : 204));
    spawned = new Spawned('start:worker', { REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: SHIPPED_MODELS, WORKER_METRICS_PORT: '0', ...env });
    await spawned.waitForLog('worker started', 60_000);
    await p.gateway.catalog.refresh();
  });
  after(async () => {
    spawned?.kill();
    await receiver?.close();
    await p?.close();
  });

  it('delivers again with the same webhook-id on the next worker, promptly, once, not using up a scheduled attempt', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook: receiver.url }) });
    expect(res.status).to.equal(202);
    const job = (await res.json()) as { id: string };
    await waitUntil(() => receiver.got.length >= 1, 30_000, 'the first attempt in flight');
    spawned!.kill();
    await spawned!.exit(10_000);
    spawned = undefined;
    const killedAt = Date.now();

    await p.startWorker();
    const read = async () => ((await (await p.api(`/v1/jobs/${job.id}/webhook_deliveries`)).json()) as { data: WebhookDelivery[] }).data[0];
    const d = await waitUntil(async () => {
      const x = await read();
      return x && x.state !== 'pending' ? x : undefined;
    }, 20_000, 'the delivery to end');
    const tookMs = Date.now() - killedAt;
    await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'the webhook queue idle');

    expect(d.state, JSON.stringify(d.attempts)).to.equal('succeeded');
    // Not the next scheduled attempt 30 s later: the run lost with its worker runs again once its lock lapses.
    expect(tookMs, 'ms from the kill to the delivery').to.be.below(15_000);
    expect(receiver.got).to.have.length(2);
    expect(receiver.got[1]!.headers['webhook-id']).to.equal(receiver.got[0]!.headers['webhook-id']);
    expect(receiver.got[1]!.body).to.equal(receiver.got[0]!.body);
    const secret = ((await (await p.api('/v1/webhooks/secret')).json()) as { secret: string }).secret;
    for (const g of receiver.got) new Webhook(secret).verify(g.body, g.headers);
    expect(d.attempts.map((a) => [a.attempt, a.status_code, a.trigger])).to.deep.equal([[1, 204, 'scheduled']]);
  });
});
