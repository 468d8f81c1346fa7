import { expect } from 'chai';
import { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, type WebhookDelivery } from '@infer/webhooks';
import { createWorker } from '../apps/worker/src/index.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

const INPUT = { features: new Array(64).fill(0.5) };

/**
 * docs/api.md, Delivery: "An attempt cut short because its worker is shutting
 * down (a deploy) is logged with the error `aborted: the worker is shutting
 * down` and runs again about a second later, on whichever worker takes it".
 * A resend is "one more attempt"; when that attempt is cut short by a deploy
 * it is not the receiver's answer, so it must run again, not end the
 * delivery as `failed` (the resend silently lost).
 */

describe('webhooks: a resend cut short by a worker shutdown', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let receiver: WebhookReceiver;

  before(async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50' } });
    // 1st delivery (the scheduled one): 200. 2nd (the resend): no answer, until the worker goes. Later: 200.
    receiver = await startWebhookReceiver((n) => (n === 2 ? 'hang' : 200));
  });
  after(async () => {
    await receiver.close();
    await p.close();
  });

  it('runs the resend again on another worker and ends succeeded, not failed with "aborted"', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: INPUT, webhook: receiver.url }) });
    expect(res.status).to.equal(202);
    const job = (await res.json()) as { id: string };
    const delivered = await waitUntil(async () => {
      const list = (await (await p.api(`/v1/jobs/${job.id}/webhook_deliveries`)).json()) as { data: WebhookDelivery[] };
      return list.data.find((d) => d.state === 'succeeded');
    }, 10_000, 'the first delivery');

    const resend = await p.api(`/v1/webhook_deliveries/${delivered.id}/resend`, { method: 'POST' });
    expect(resend.status).to.equal(202);
    await waitUntil(() => receiver.deliveries.length >= 2, 10_000, 'the resend attempt to be in flight');

    // A deploy: the worker goes while the resend's attempt is in flight, and another comes.
    await p.worker!.close();
    const next = await createWorker(p.config, silentLogger, { models: p.gateway.models });
    try {
      const ended = await waitUntil(async () => {
        const d = (await (await p.api(`/v1/webhook_deliveries/${delivered.id}`)).json()) as WebhookDelivery;
        return d.state !== 'pending' ? d : undefined;
      }, 10_000, 'the resend to end');
      const trail = JSON.stringify(ended.attempts.map((a) => [a.attempt, a.trigger, a.status_code, a.error]));
      expect(ended.state, trail).to.equal('succeeded');
      expect(receiver.deliveries.length, 'the receiver got the resend after all').to.be.at.least(3);
      expect(receiver.deliveries[2]!.headers['webhook-id']).to.equal(delivered.id);
    } finally {
      await next.close();
    }
  });
});

/**
 * docs/api.md, The WebhookDelivery object: "A delivery log lives as long as
 * its job or batch (RESULT_TTL_SECONDS), longer only while retries are still
 * scheduled", and GET /v1/webhook_deliveries/{event_id}: "An unknown,
 * expired or other tenant's event is 404 not_found". A delivered event has no
 * retry scheduled: its log (with the body: the job's whole output) must not
 * be kept 10 more minutes (the margin kept while retries are scheduled),
 * long after the job itself is gone.
 */
describe('webhooks: a delivered event\'s log lives RESULT_TTL_SECONDS from its last attempt', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let receiver: WebhookReceiver;

  before(async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50', RESULT_TTL_SECONDS: '1' } });
    receiver = await startWebhookReceiver();
  });
  after(async () => {
    await receiver.close();
    await p.close();
  });

  it('is 404 once the job has expired and no retry is scheduled', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: INPUT, webhook: receiver.url }) });
    expect(res.status).to.equal(202);
    const job = (await res.json()) as { id: string };
    await waitUntil(() => receiver.deliveries.length > 0, 10_000, 'the delivery');
    const eventId = String(receiver.deliveries[0]!.headers['webhook-id']);
    const delivered = await waitUntil(async () => {
      const r = await p.api(`/v1/webhook_deliveries/${eventId}`);
      if (r.status !== 200) return undefined;
      const d = (await r.json()) as WebhookDelivery;
      return d.state === 'succeeded' ? d : undefined;
    }, 5000, 'the delivery to read succeeded');
    expect(delivered.next_attempt_at).to.equal(null);

    // The job ends and expires RESULT_TTL_SECONDS (1 s) later.
    await waitUntil(async () => (await p.api(`/v1/jobs/${job.id}`)).status === 404, 10_000, 'the job to expire');
    // Its delivery log, all attempts done, should go with it (1 s after its last attempt).
    let last = 0;
    await waitUntil(async () => {
      last = (await p.api(`/v1/webhook_deliveries/${eventId}`)).status;
      return last === 404;
    }, 6000, 'the delivery log to expire with its job').catch(() => undefined);
    expect(last, 'GET /v1/webhook_deliveries/{event_id} several seconds after the job expired').to.equal(404);
  });
});

/**
 * A delivery run whose every try throws (Redis refuses a command it needs: here the tenant's signing
 * secret is stored under a key of the wrong type) is failed for good by BullMQ. Its event must not stay
 * `pending` forever, which would also refuse its resend: it reads `failed`, and can be resent once the
 * fault is gone.
 */
describe('webhooks: a delivery run that fails for good', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let receiver: WebhookReceiver;
  let redis: Redis;

  before(async () => {
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50,50' } });
    redis = new Redis(p.config.redisUrl);
    receiver = await startWebhookReceiver();
  });
  after(async () => {
    redis.disconnect();
    await receiver.close();
    await p.close();
  });

  it('ends its event failed (not pending forever), and a resend then delivers it', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: INPUT, webhook: receiver.url }) });
    expect(res.status).to.equal(202);
    const job = (await res.json()) as { id: string };
    const eventId = eventIdFor('job.completed', job.id);
    const secret = keys(p.prefix).webhookSecret('tenant-a');
    await redis.del(secret);
    await redis.hset(secret, 'not', 'a string');
    await p.startWorker();
    const ended = await waitUntil(
      async () => {
        const r = await p.api(`/v1/webhook_deliveries/${eventId}`);
        if (r.status !== 200) return undefined;
        const d = (await r.json()) as WebhookDelivery;
        return d.state !== 'pending' ? d : undefined;
      },
      15_000,
      'the event to end',
    );
    expect(ended.state).to.equal('failed');
    expect(receiver.deliveries.length, 'nothing was sent unsigned').to.equal(0);
    await redis.del(secret);
    expect((await p.api(`/v1/webhook_deliveries/${eventId}/resend`, { method: 'POST' })).status).to.equal(202);
    const resent = await waitUntil(
      async () => {
        const d = (await (await p.api(`/v1/webhook_deliveries/${eventId}`)).json()) as WebhookDelivery;
        return d.state !== 'pending' ? d : undefined;
      },
      10_000,
      'the resend to end',
    );
    expect(resent.state).to.equal('succeeded');
  });
});
