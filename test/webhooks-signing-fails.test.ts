import { expect } from 'chai';
import type { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, generateSecret, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * A run whose signing throws (the tenant's secret in Redis is not one: altered
 * by hand) fails, and gives its receiver's slot back. Kept, the slot would
 * count as an attempt in flight for ever: once a receiver's `perReceiver`
 * slots had leaked so, every later event of it would wait for a free slot
 * that never comes, the secret mended or not.
 */
describe('webhooks: a run whose signing throws', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('hook-sign-fails');
  let redis: Redis;
  let events: WebhookEvents;
  let delivery: WebhookDeliveryWorker;
  let receiver: WebhookReceiver;

  before(async () => {
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    receiver = await startWebhookReceiver();
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [60_000], logger: silentLogger });
  });
  after(async () => {
    await delivery?.close();
    await events?.close();
    await receiver?.close();
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('gives its receiver’s slot back: the next event is delivered once the secret is mended', async () => {
    const secretKey = keys(prefix).webhookSecret('tenant-a');
    await redis.set(secretKey, 'whsec_not-base64');
    // One slot a receiver: a single leak would hold it.
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [60_000], resultTtlMs: 60_000, allowPrivate: true, concurrency: 10, perReceiver: 1 });
    const failed = new Promise<string>((resolve) => (delivery as unknown as { worker: Worker }).worker.once('failed', (_job, err) => resolve(err.message)));
    await events.ensure(eventIdFor('job.completed', 'job-sign-1'), { tenant: 'tenant-a', url: receiver.url, type: 'job.completed', data: { object: 'job', id: 'job-sign-1' } });
    expect(await failed).to.match(/padding|base64/i);

    await redis.set(secretKey, generateSecret());
    const second = eventIdFor('job.completed', 'job-sign-2');
    await events.ensure(second, { tenant: 'tenant-a', url: receiver.url, type: 'job.completed', data: { object: 'job', id: 'job-sign-2' } });
    await waitUntil(() => receiver.deliveries.some((d) => d.headers['webhook-id'] === second), 10_000, 'the second event delivered');
  });
});
