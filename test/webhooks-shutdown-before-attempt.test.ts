import { expect } from 'chai';
import { Redis } from 'ioredis';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * docs/api.md, Delivery: "An attempt cut short because its worker is
 * shutting down (a deploy) is logged with the error `aborted: the worker is
 * shutting down` and runs again about a second later, on whichever worker
 * takes it; it does not use up one of the 7. A resend's attempt cut short so
 * runs again too."
 *
 * A delivery run fetched just before its worker's close awaits the event
 * (`log.get`) and the tenant's secret before it calls `deliver`. When the
 * shutdown lands in that window, `deliver` sees the signal already aborted
 * and answers `failed('aborted: …')` WITHOUT `interrupted: true`
 * (delivery.ts), so the worker judges it a real failed attempt: it uses up
 * an attempt, and the last one (or a resend's only one) ends the event
 * `failed`, never sent, instead of running again on the next worker.
 *
 * The window is hit deterministically through the worker's `now` option: it
 * is read right after those awaits, just before `deliver`, and here it starts
 * the worker's close, exactly as a SIGTERM arriving during `secrets.get` would.
 */
describe('webhooks: a shutdown between a run\'s fetch and its attempt', function () {
  this.timeout(30_000);
  const tenant = 'tenant-a';
  let prefix: string;
  let redis: Redis;
  let events: WebhookEvents;
  let hooks: WebhookReceiver;
  const workers: WebhookDeliveryWorker[] = [];

  beforeEach(async () => {
    prefix = uniquePrefix('review-hooks-race');
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    hooks = await startWebhookReceiver();
  });
  afterEach(async () => {
    for (const w of workers) await w.close();
    workers.length = 0;
    await events.close();
    await hooks.close();
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  /** A delivery worker that starts its own close the first time it reads the clock for an attempt. */
  function closingWorker(retryDelaysMs: number[]): { worker: WebhookDeliveryWorker; closed: Promise<void> } {
    let closed: Promise<void> | undefined;
    let release!: () => void;
    const started = new Promise<void>((resolve) => (release = resolve));
    const worker: WebhookDeliveryWorker = new WebhookDeliveryWorker({
      connection: redis,
      prefix,
      logger: silentLogger,
      retryDelaysMs,
      resultTtlMs: 60_000,
      allowPrivate: true,
      lockMs: 2000,
      now: () => {
        if (!closed) {
          closed = worker.close();
          release();
        }
        return Date.now();
      },
    });
    workers.push(worker);
    return { worker, closed: started.then(() => closed!) };
  }

  const plainWorker = (retryDelaysMs: number[]) => {
    const w = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs, resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000 });
    workers.push(w);
    return w;
  };

  it('the last scheduled attempt runs again on the next worker (it is not ended failed, never sent)', async () => {
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [], logger: silentLogger });
    const id = eventIdFor('job.completed', 'job-race-1');
    const { closed } = closingWorker([]);
    await events.ensure(id, { tenant, url: hooks.url, type: 'job.completed', data: { object: 'job', id: 'job-race-1' } });
    await closed;
    const afterClose = await events.log.delivery(id, tenant);
    expect(afterClose?.attempts.map((a) => a.error)).to.deep.equal(['aborted: the worker is shutting down']);
    expect(afterClose?.state, 'an attempt cut short by a shutdown leaves the event to run again').to.equal('pending');

    plainWorker([]);
    await waitUntil(async () => (await events.log.delivery(id, tenant))?.state === 'succeeded', 8000, 'the next worker to deliver it');
    expect(hooks.deliveries).to.have.length(1);
  });

  it("a resend's attempt cut short runs again too (not ended failed)", async () => {
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [50], logger: silentLogger });
    const id = eventIdFor('job.completed', 'job-race-2');
    const first = plainWorker([50]);
    await events.ensure(id, { tenant, url: hooks.url, type: 'job.completed', data: { object: 'job', id: 'job-race-2' } });
    await waitUntil(async () => (await events.log.delivery(id, tenant))?.state === 'succeeded', 8000, 'the first delivery');
    await first.close();
    workers.splice(workers.indexOf(first), 1);

    const { closed } = closingWorker([50]);
    const resent = await events.resend(tenant, id);
    expect(resent).to.not.be.oneOf(['missing', 'pending']);
    await closed;
    const afterClose = await events.log.delivery(id, tenant);
    expect(afterClose?.attempts.at(-1)?.error).to.equal('aborted: the worker is shutting down');
    expect(afterClose?.state, 'a resend cut short by a shutdown is still to run').to.equal('pending');
  });
});
