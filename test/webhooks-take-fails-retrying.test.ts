import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { webhookQueue, type EnvelopeJob } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { JobWebhookEmitter } from '../apps/worker/src/interactive/job-webhooks.js';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * A take whose ensureMany keeps failing ends the events "it may have
 * created without queuing their delivery" as failed (ensureManyOrFail). An
 * event created and queued by an EARLIER take, whose delivery run is alive
 * and has a retry scheduled (CreateOutcome 'retrying': a run owns it), is
 * not one of those: a later take's Redis blip must not end it, or its
 * scheduled retry finds it `failed`, stops, and it is never delivered.
 */
describe('webhooks: a failing take over a job.started that is being retried', function () {
  this.timeout(20_000);
  const tenant = 'tenant-a';
  let prefix: string;
  let redis: Redis;
  let events: WebhookEvents;
  let queue: Queue;
  let delivery: WebhookDeliveryWorker | undefined;
  let hooks: WebhookReceiver<{ type: string }>;
  const startDelivery = () => new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [300], resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000 });

  beforeEach(async () => {
    prefix = uniquePrefix('wh-take-retrying');
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [300], logger: silentLogger });
    const ref = webhookQueue(prefix);
    queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
    // The receiver fails the first attempt, then is back.
    hooks = await startWebhookReceiver((n) => (n === 1 ? 500 : 204));
  });
  afterEach(async () => {
    await delivery?.close();
    delivery = undefined;
    await queue?.close();
    await events?.close();
    await hooks?.close();
    redis?.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('keeps its scheduled retry: the event is delivered, not ended failed after one attempt', async () => {
    const job: EnvelopeJob = { id: `job-${Math.random().toString(36).slice(2)}`, tenant, created_at: Date.now(), webhook: hooks.url, webhook_events_filter: ['start'] };
    const take = () => new JobWebhookEmitter(events, silentLogger).started([{ model: 'mlp', version: '2', job }], Date.now());
    const id = eventIdFor('job.started', job.id);

    // First take: created, queued; the first attempt meets a 500 and a retry is scheduled.
    delivery = startDelivery();
    await take();
    await waitUntil(async () => (await events.log.get(id))?.attemptCount === 1 && (await (await queue.getJob(id))?.getState()) === 'delayed', 10_000, 'the first attempt, its retry scheduled');
    // The delivery workers are away for the moment (a deploy), the retry waiting in the queue.
    await delivery.close();
    delivery = undefined;
    expect((await events.log.get(id))?.state).to.equal('pending');

    // The job's worker dies; the take that follows meets a Redis blip through all its tries.
    const log = events.log as unknown as { createManyIfAbsent: (...a: unknown[]) => Promise<unknown> };
    const real = log.createManyIfAbsent.bind(events.log);
    log.createManyIfAbsent = () => Promise.reject(new Error('Connection is closed.'));
    await take(); // logs, never rejects
    log.createManyIfAbsent = real;

    // Delivery comes back; the scheduled retry runs.
    delivery = startDelivery();
    await waitUntil(() => webhookQueueIdle(prefix), 10_000, 'the webhook queue idle');
    const d = await events.log.delivery(id, tenant);
    // The scheduled retry delivered it: not ended failed by the failing take after one attempt.
    expect({ state: d?.state, attempts: d?.attempt_count, received: hooks.deliveries.length }).to.deep.equal({ state: 'succeeded', attempts: 2, received: 2 });
  });

  it('keeps a delivery an earlier take queued and nothing has tried yet: delivered once its workers come', async () => {
    const job: EnvelopeJob = { id: `job-${Math.random().toString(36).slice(2)}`, tenant, created_at: Date.now(), webhook: hooks.url, webhook_events_filter: ['start'] };
    const take = () => new JobWebhookEmitter(events, silentLogger).started([{ model: 'mlp', version: '2', job }], Date.now());
    const id = eventIdFor('job.started', job.id);
    // First take: created and queued; no delivery worker is up yet.
    await take();
    expect(await queue.getJobState(id)).to.equal('waiting');
    const log = events.log as unknown as { createManyIfAbsent: (...a: unknown[]) => Promise<unknown> };
    const real = log.createManyIfAbsent.bind(events.log);
    log.createManyIfAbsent = () => Promise.reject(new Error('Connection is closed.'));
    await take();
    log.createManyIfAbsent = real;
    expect((await events.log.get(id))?.state, 'still pending: its queued run delivers it').to.equal('pending');
    delivery = startDelivery();
    await waitUntil(() => webhookQueueIdle(prefix), 10_000, 'the webhook queue idle');
    const d = await events.log.delivery(id, tenant);
    // The receiver fails the first attempt: delivered by the retry.
    expect({ state: d?.state, attempts: d?.attempt_count }).to.deep.equal({ state: 'succeeded', attempts: 2 });
  });
});
