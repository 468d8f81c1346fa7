import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { webhookQueue, type EnvelopeJob } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { JobWebhookEmitter } from '../apps/worker/src/interactive/job-webhooks.js';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * `job.started` is ensured on every take of its job's envelope (one event
 * id a job): a take after a stall sends what a worker that died had not.
 * These hold the two edges of that: a take while a resend of the event is
 * pending queues no second delivery beside the resend's, and a take whose
 * queuing fails (Redis erring through the retries) ends the event failed,
 * resendable, not pending for good with nothing to deliver it.
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
  const startDelivery = () => new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [100], resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000 });
  const jobOf = (): EnvelopeJob => ({ id: `job-${Math.random().toString(36).slice(2)}`, tenant, created_at: Date.now(), webhook: hooks.url, webhook_events_filter: ['start', 'completed'] });
  const take = (job: EnvelopeJob) => new JobWebhookEmitter(events, silentLogger).started([{ model: 'mlp', version: '2', job }], Date.now());

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
});
