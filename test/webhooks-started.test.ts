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
 * `job.started` is ensured on every take of its job's envelope (one event
 * id a job): a take after a stall sends what a worker that died had not.
 * These hold the edges of that: a take while a resend of the event is
 * pending queues no second delivery beside the resend's; a take whose
 * queuing fails (Redis erring through the retries) ends the event failed,
 * resendable, not pending for good with nothing to deliver it; and such a
 * take leaves alone a delivery an earlier take queued (its run, waiting or
 * with a retry scheduled, delivers it).
 */
describe('webhooks: job.started produced by the takes of its envelope', function () {
  this.timeout(30_000);
  const tenant = 'tenant-a';
  let prefix: string;
  let redis: Redis;
  let events: WebhookEvents;
  let queue: Queue;
  let hooks: WebhookReceiver<{ type: string; data: { id: string } }>;
  let delivery: WebhookDeliveryWorker | undefined;
  const startDelivery = (retryDelaysMs = [100]) => new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs, resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000 });
  const jobOf = (): EnvelopeJob => ({ id: `job-${Math.random().toString(36).slice(2)}`, tenant, created_at: Date.now(), webhook: hooks.url, webhook_events_filter: ['start', 'completed'] });
  const take = (job: EnvelopeJob) => new JobWebhookEmitter(events, silentLogger).started([{ model: 'mlp', version: '2', job }], Date.now());
  /** A take whose Redis calls fail through all its tries (the job's worker died; the next one meets a blip). */
  const failingTake = async (job: EnvelopeJob) => {
    const log = events.log as unknown as { createManyIfAbsent: (...a: unknown[]) => Promise<unknown> };
    const real = log.createManyIfAbsent.bind(events.log);
    log.createManyIfAbsent = () => Promise.reject(new Error('Connection is closed.'));
    try {
      expect(await take(job), 'the take made nothing').to.equal(false);
    } finally {
      log.createManyIfAbsent = real;
    }
  };

  beforeEach(async () => {
    prefix = uniquePrefix('started');
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [100], logger: silentLogger });
    const ref = webhookQueue(prefix);
    queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
    hooks = await startWebhookReceiver();
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

  it('a take while a resend of the delivered event is pending queues nothing beside the resend', async () => {
    const job = jobOf();
    const id = eventIdFor('job.started', job.id);
    const state = async () => (await events.log.delivery(id, tenant))?.state;
    // First take: created, queued, delivered; the delivery run is removed once done.
    delivery = startDelivery();
    await take(job);
    await waitUntil(async () => (await state()) === 'succeeded', 10_000, 'the first delivery');
    // A deploy: delivery stops; the client resends the event; the job's worker died too, and a take ensures it again.
    await delivery.close();
    delivery = undefined;
    expect(await events.resend(tenant, id)).to.have.property('state', 'pending');
    await take(job);
    // The resend's run is queued under an id of its own; a second run under the event's id would deliver it once more.
    expect(await queue.getJob(id), 'a scheduled run queued beside the resend').to.equal(undefined);
    delivery = startDelivery();
    await waitUntil(async () => (await state()) === 'succeeded' && hooks.deliveries.length === 2, 10_000, 'the resend');
    expect(hooks.deliveries.map((d) => d.headers['webhook-id'])).to.deep.equal([id, id]);
  });

  it('a take whose queuing fails through its retries ends the event failed, and a resend delivers it', async () => {
    const job = jobOf();
    const id = eventIdFor('job.started', job.id);
    const bull = (events as unknown as { queue: Pick<Queue, 'addBulk'> }).queue;
    const addBulk = bull.addBulk.bind(bull);
    let refused = 0;
    bull.addBulk = () => (refused++, Promise.reject(new Error('Connection is closed.')));
    await take(job); // logs; never rejects
    bull.addBulk = addBulk;
    expect(refused, 'tried again').to.equal(3);
    // Not pending with nothing queued to deliver it (a resend of a pending event is refused): failed, resendable.
    expect((await events.log.delivery(id, tenant))?.state).to.equal('failed');
    delivery = startDelivery();
    expect(await events.resend(tenant, id)).to.have.property('state', 'pending');
    await waitUntil(() => hooks.deliveries.length === 1, 10_000, 'the resend');
    expect(hooks.deliveries[0]!.headers['webhook-id']).to.equal(id);
  });

  it('a failing take leaves a delivery whose retry an earlier take scheduled: the retry delivers it', async () => {
    // The receiver fails the first attempt, then is back.
    await hooks.close();
    hooks = await startWebhookReceiver((n) => (n === 1 ? 500 : 204));
    const job = jobOf();
    const id = eventIdFor('job.started', job.id);
    // First take: created, queued; the first attempt meets the 500 and a retry is scheduled (far off: promoted below).
    delivery = startDelivery([60_000]);
    await take(job);
    await waitUntil(async () => (await events.log.get(id))?.attemptCount === 1 && (await queue.getJobState(id)) === 'delayed', 10_000, 'the first attempt, its retry scheduled');
    await delivery.close();
    delivery = undefined;
    await failingTake(job);
    expect((await events.log.get(id))?.state, 'still pending: its scheduled run delivers it').to.equal('pending');
    await (await queue.getJob(id))!.promote();
    delivery = startDelivery();
    await waitUntil(() => webhookQueueIdle(prefix), 10_000, 'the webhook queue idle');
    const d = await events.log.delivery(id, tenant);
    expect({ state: d?.state, attempts: d?.attempt_count, received: hooks.deliveries.length }).to.deep.equal({ state: 'succeeded', attempts: 2, received: 2 });
  });

  it('a failing take leaves a delivery an earlier take queued and nothing has tried yet: delivered once its workers come', async () => {
    const job = jobOf();
    const id = eventIdFor('job.started', job.id);
    // First take: created and queued; no delivery worker is up yet.
    await take(job);
    expect(await queue.getJobState(id)).to.equal('waiting');
    await failingTake(job);
    expect((await events.log.get(id))?.state, 'still pending: its queued run delivers it').to.equal('pending');
    delivery = startDelivery();
    await waitUntil(() => webhookQueueIdle(prefix), 10_000, 'the webhook queue idle');
    const d = await events.log.delivery(id, tenant);
    expect({ state: d?.state, attempts: d?.attempt_count, received: hooks.deliveries.length }).to.deep.equal({ state: 'succeeded', attempts: 1, received: 1 });
  });
});
