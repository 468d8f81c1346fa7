import { expect } from 'chai';
import { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * How long the delivery log's keys live. `GET /v1/jobs/{id}/webhook_deliveries`
 * reads the job's list of event ids: the docs say it lives RESULT_TTL,
 * "longer only while retries are still scheduled", so a job's second event
 * must not cut the list's life short while its first is still being retried.
 * A resend marks a delivered event pending again, and is undone when its run
 * cannot be queued (DeliveryLog.markResend / unmarkResend): neither may leave
 * a key that never expires, nor one that expires before the resend's run.
 */
describe('webhooks: the lifetimes of the delivery log', function () {
  this.timeout(20_000);
  const tenant = 'tenant-a';
  let prefix: string;
  let redis: Redis;
  let events: WebhookEvents;
  let delivery: WebhookDeliveryWorker | undefined;
  let hooks: WebhookReceiver;

  beforeEach(async () => {
    prefix = uniquePrefix('wh-log-ttl');
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [100], logger: silentLogger });
    hooks = await startWebhookReceiver();
  });
  afterEach(async () => {
    await delivery?.close();
    delivery = undefined;
    await events?.close();
    await hooks?.close();
    redis?.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it("a job's later event (job.completed) does not shorten the list below a listed event's retry horizon", async () => {
    const jobId = `job-${Math.random().toString(36).slice(2)}`;
    const started = eventIdFor('job.started', jobId);
    const k = keys(prefix);
    const list = k.webhookDeliveries('job', jobId);
    // A receiver down for now, the next attempt an hour away.
    await hooks.close();
    hooks = await startWebhookReceiver(() => 503);
    const url = hooks.url;
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [3600_000], resultTtlMs: 1000, allowPrivate: true, lockMs: 2000 });
    await events.ensure(started, { tenant, url, type: 'job.started', data: { object: 'job', id: jobId } });
    // The first attempt meets the 503: the event stays pending, its next attempt in an hour; its log and the list live past it.
    await waitUntil(async () => (await events.log.get(started))?.attemptCount === 1, 10_000, 'the first attempt');
    await delivery.close();
    delivery = undefined;
    const startedTtl = await redis.pttl(k.webhookEvent(started));
    expect(startedTtl, 'the started event outlives its next attempt').to.be.greaterThan(3600_000);
    expect(await redis.pttl(list), 'the list was extended with it').to.be.greaterThan(3600_000);

    // The job ends: its job.completed is created under the same job.
    await events.ensure(eventIdFor('job.completed', jobId), { tenant, url, type: 'job.completed', data: { object: 'job', id: jobId } });

    const listTtl = await redis.pttl(list);
    const eventTtl = await redis.pttl(k.webhookEvent(started));
    expect((await events.log.get(started))?.state).to.equal('pending');
    // The list lives at least as long as the pending event (its retry an hour away), not the new event's ~10 min.
    expect(listTtl, `list PTTL ${listTtl} ms < pending job.started event PTTL ${eventTtl} ms`).to.be.at.least(eventTtl - 1000);
  });

  /** A job.completed delivered by a delivery worker whose RESULT_TTL is `resultTtlMs`; the delivery worker is stopped after. */
  async function delivered(resultTtlMs: number): Promise<string> {
    const jobId = `job-${Math.random().toString(36).slice(2)}`;
    const id = eventIdFor('job.completed', jobId);
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [100], resultTtlMs, allowPrivate: true, lockMs: 2000 });
    await events.ensure(id, { tenant, url: hooks.url, type: 'job.completed', data: { object: 'job', id: jobId } });
    await waitUntil(async () => (await events.log.get(id))?.state === 'succeeded', 10_000, 'the delivery');
    await delivery.close();
    delivery = undefined;
    return id;
  }

  it('an undone resend does not bring back an event that expired meanwhile (as a hash that never expires)', async () => {
    const id = await delivered(60_000);
    const key = keys(prefix).webhookEvent(id);
    expect(await events.log.markResend(id, tenant, Date.now(), 'resend-1', 60_000)).to.deep.equal({ was: 'succeeded' });
    // Its RESULT_TTL runs out while the resend's queue add is failing.
    await redis.del(key);
    await events.log.unmarkResend(id, 'resend-1', 'succeeded');
    expect(await redis.exists(key), 'the event stays gone').to.equal(0);
  });

  it('an undone resend puts back the state it had, its TTL kept; another resend\'s undo leaves it', async () => {
    const id = await delivered(60_000);
    const key = keys(prefix).webhookEvent(id);
    await events.log.markResend(id, tenant, Date.now(), 'resend-1', 60_000);
    await events.log.unmarkResend(id, 'resend-2', 'succeeded');
    expect((await events.log.get(id))?.state, "another resend's undo").to.equal('pending');
    await events.log.unmarkResend(id, 'resend-1', 'succeeded');
    expect((await events.log.get(id))?.state).to.equal('succeeded');
    expect(await redis.pttl(key)).to.be.greaterThan(0);
  });

  it('a resend near the end of the event\'s life makes it live RESULT_TTL more, its attempts too', async () => {
    // Delivered under a RESULT_TTL of 2 s: resent with under 2 s to live, its run could come after it expired.
    const id = await delivered(2000);
    const k = keys(prefix);
    expect(await redis.pttl(k.webhookEvent(id))).to.be.at.most(2000);
    const resent = await events.resend(tenant, id);
    expect(resent).to.not.equal('missing');
    expect(await redis.pttl(k.webhookEvent(id)), 'the event').to.be.greaterThan(50_000);
    expect(await redis.pttl(k.webhookAttempts(id)), 'its attempts').to.be.greaterThan(50_000);
  });

  it('a pending event ended failed (its run lost) lives RESULT_TTL more, and so does its place in the job\'s list', async () => {
    const jobId = `job-${Math.random().toString(36).slice(2)}`;
    const id = eventIdFor('job.completed', jobId);
    const k = keys(prefix);
    // No delivery worker: the event stays pending, listed under its job.
    await events.ensure(id, { tenant, url: hooks.url, type: 'job.completed', data: { object: 'job', id: jobId } });
    // The list was made long ago: little of its life is left.
    await redis.pexpire(k.webhookDeliveries('job', jobId), 1000);
    expect(await events.log.failIfPending(id, 60_000)).to.equal(true);
    expect((await events.log.get(id))?.state).to.equal('failed');
    expect(await redis.pttl(k.webhookEvent(id)), 'the event').to.be.greaterThan(50_000);
    expect(await redis.pttl(k.webhookDeliveries('job', jobId)), 'its job\'s list').to.be.greaterThan(50_000);
    expect((await events.log.list({ object: 'job', id: jobId }, tenant)).map((e) => e.id), 'listed').to.deep.equal([id]);
  });
});
