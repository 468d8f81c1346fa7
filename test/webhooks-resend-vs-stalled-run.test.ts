import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { expect } from 'chai';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { webhookQueue } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';

/**
 * docs/api.md: "A resend is a single attempt, not a new retry schedule";
 * "A worker killed mid-attempt (no shutdown) loses its lock; the attempt
 * runs again on another worker once the lock has lapsed".
 *
 * A worker dies right after it recorded a delivery's last scheduled attempt
 * (the event reads `failed`) and before BullMQ marked its run completed: the
 * run is still `active`, and is run again once its lock lapses (up to about
 * twice WORKER_LOCK_MS later: a minute by default). A client that resends the
 * failed delivery in that window makes it `pending` again. The re-run of the
 * stale scheduled run must not take the resend's `pending` for its own (it
 * did: a scheduled attempt beside the resend's, with the same attempt number,
 * and a new retry schedule for a delivery that was to get one attempt).
 *
 * The dead worker is played by a plain BullMQ worker on the webhooks queue
 * that records the attempt as the delivery worker does, then hangs and is
 * closed with force (its run left active, its lock lapsing, as a SIGKILL
 * leaves it).
 */
describe('webhooks: a resend while a dead worker’s scheduled run is still to be taken back', function () {
  this.timeout(40_000);
  const prefix = uniquePrefix('rh-resend-stall');
  const tenant = 'tenant-a';
  let redis: Redis;
  let events: WebhookEvents;
  let doomed: Worker | undefined;
  let delivery: WebhookDeliveryWorker | undefined;
  let server: http.Server;
  let url: string;
  const sockets = new Set<Socket>();
  const requests: Array<{ id: string; res: http.ServerResponse }> = [];

  before(async () => {
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [200, 200, 200], logger: silentLogger });
    // Holds every request until the test answers it.
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => requests.push({ id: String(req.headers['webhook-id']), res }));
    });
    server.on('connection', (c) => (sockets.add(c), c.on('close', () => sockets.delete(c))));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  after(async () => {
    for (const c of sockets) c.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await doomed?.close(true).catch(() => undefined);
    await delivery?.close();
    await events?.close();
    redis?.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('the resend stays one attempt: no second attempt beside it, no retry schedule, attempt numbers once each', async () => {
    const id = eventIdFor('job.completed', 'job-stall-1');
    await events.ensure(id, { tenant, url, type: 'job.completed', data: { object: 'job', id: 'job-stall-1' } });

    // The worker that dies: it makes the last attempt (410 Gone: failed for good), records it, and dies
    // before its run is marked completed.
    const ref = webhookQueue(prefix);
    const doomedConnection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    let recorded = false;
    doomed = new Worker(
      ref.name,
      async () => {
        const event = (await events.log.get(id))!;
        const at = Date.now();
        await events.log.recordAttempt(
          event,
          { attempt: 1, timestamp: new Date(at).toISOString(), status_code: 410, error: '410 Gone: the receiver asked for no more deliveries', duration_ms: 3, state: 'failed', trigger: 'scheduled' },
          { state: 'failed', nextAttemptAt: null },
          60_000,
        );
        recorded = true;
        await new Promise(() => undefined); // killed here
      },
      { connection: doomedConnection, prefix: ref.prefix, lockDuration: 1000, skipStalledCheck: true },
    );
    await waitUntil(() => recorded, 10_000, 'the doomed worker to record its attempt');
    await doomed.close(true);
    doomedConnection.disconnect();
    doomed = undefined;
    expect((await events.log.get(id))!.state).to.equal('failed');

    // The client resends the failed delivery (allowed: it has ended).
    const resent = await events.resend(tenant, id);
    expect(resent).to.not.be.oneOf(['missing', 'pending']);

    // A live delivery worker: it takes the resend at once (held open by the receiver), and the dead
    // worker's run once its lock has lapsed.
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [200, 200, 200], resultTtlMs: 60_000, allowPrivate: true, lockMs: 1000 });
    await waitUntil(() => requests.length >= 1, 10_000, "the resend's attempt");
    // Give the stalled run its chance to be taken back (two stalled checks of 1 s, the lock of 1 s).
    try {
      await waitUntil(() => requests.length >= 2, 5000, 'a second attempt');
    } catch {
      /* none came: what the docs promise */
    }
    // The receiver now answers everything 500 (and whatever comes later).
    server.removeAllListeners('request');
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      req.resume();
      req.on('end', () => {
        requests.push({ id: String(req.headers['webhook-id']), res });
        res.writeHead(500).end();
      });
    });
    for (const r of requests) if (!r.res.headersSent) r.res.writeHead(500).end();
    await waitUntil(async () => (await webhookQueueIdle(prefix)) && (await events.log.get(id))!.state !== 'pending', 15_000, 'the delivery to end').catch(async (err: Error) => {
      const d = await events.log.delivery(id, tenant);
      const st = await redis.eval("return {redis.call('exists', KEYS[1]), redis.call('pttl', KEYS[1]), redis.call('lrange', KEYS[2], 0, -1), redis.call('smembers', KEYS[3]), redis.call('hget', KEYS[4], 'stc')}", 4, `${ref.prefix}:${ref.name}:${id}:lock`, `${ref.prefix}:${ref.name}:active`, `${ref.prefix}:${ref.name}:stalled`, `${ref.prefix}:${ref.name}:${id}`);
      throw new Error(`${err.message}: ${JSON.stringify(st)} ${JSON.stringify({ requests: requests.length, state: d?.state, attempts: d?.attempts.map((a) => [a.attempt, a.trigger, a.status_code, a.error]) })}`);
    });

    const d = (await events.log.delivery(id, tenant))!;
    const rows = d.attempts.map((a) => [a.attempt, a.trigger, a.status_code]);
    // The one request is the resend's (the dead worker's 410 was its own, before this receiver counted).
    expect({ requests: requests.length, rows }).to.deep.equal({
      requests: 1,
      rows: [
        [1, 'scheduled', 410],
        [2, 'manual', 500],
      ],
    });
  });
});

/**
 * The same for a resend's own run: a worker that recorded the resend's
 * attempt (delivered, 204) and died before its run was marked completed.
 * The run taken back re-sends without looking at the log (a manual run has
 * no check at all), and logs a second manual attempt for one resend.
 */
describe('webhooks: a resend’s run taken back after its worker recorded the attempt and died', function () {
  this.timeout(40_000);
  const prefix = uniquePrefix('rh-resend-stall2');
  const tenant = 'tenant-a';
  let redis: Redis;
  let events: WebhookEvents;
  let delivery: WebhookDeliveryWorker | undefined;
  let server: http.Server;
  let url: string;
  let received = 0;
  const sockets = new Set<Socket>();

  before(async () => {
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [200], logger: silentLogger });
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        received++;
        res.writeHead(204).end();
      });
    });
    server.on('connection', (c) => (sockets.add(c), c.on('close', () => sockets.delete(c))));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  after(async () => {
    for (const c of sockets) c.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await delivery?.close();
    await events?.close();
    redis?.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  /** A BullMQ worker on the webhooks queue that records what `attempt` says, then returns or (`die`) hangs until closed with force. */
  async function fakeRun(id: string, attempt: { n: number; status: number; trigger: 'scheduled' | 'manual'; state: 'succeeded' | 'failed' }, die: boolean): Promise<void> {
    const ref = webhookQueue(prefix);
    const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    let recorded = false;
    const w = new Worker(
      ref.name,
      async () => {
        const event = (await events.log.get(id))!;
        await events.log.recordAttempt(
          event,
          { attempt: attempt.n, timestamp: new Date().toISOString(), status_code: attempt.status, error: attempt.state === 'failed' ? `HTTP ${attempt.status}` : null, duration_ms: 2, state: attempt.state, trigger: attempt.trigger },
          { state: attempt.state, nextAttemptAt: null },
          60_000,
        );
        recorded = true;
        if (die) await new Promise(() => undefined);
      },
      { connection, prefix: ref.prefix, lockDuration: 1000, skipStalledCheck: true },
    );
    await waitUntil(() => recorded, 10_000, 'the fake run to record its attempt');
    await w.close(!!die);
    connection.disconnect();
  }

  it('is not sent again, and the log keeps one manual attempt for the one resend', async () => {
    const id = eventIdFor('job.completed', 'job-stall-2');
    await events.ensure(id, { tenant, url, type: 'job.completed', data: { object: 'job', id: 'job-stall-2' } });
    // The scheduled run ends the delivery failed (410), its run completed normally.
    await fakeRun(id, { n: 1, status: 410, trigger: 'scheduled', state: 'failed' }, false);
    await waitUntil(() => webhookQueueIdle(prefix), 5000, 'the scheduled run completed');
    // One resend; its worker delivers it (204), records it, and dies before completing the run.
    expect(await events.resend(tenant, id)).to.not.be.oneOf(['missing', 'pending']);
    await fakeRun(id, { n: 2, status: 204, trigger: 'manual', state: 'succeeded' }, true);
    expect((await events.log.get(id))!.state).to.equal('succeeded');

    // A live delivery worker takes the dead worker's run back once its lock lapses.
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [200], resultTtlMs: 60_000, allowPrivate: true, lockMs: 1000 });
    await waitUntil(() => webhookQueueIdle(prefix), 15_000, 'the run taken back and ended');
    const d = (await events.log.delivery(id, tenant))!;
    expect({ received, rows: d.attempts.map((a) => [a.attempt, a.trigger, a.status_code]) }).to.deep.equal({
      received: 0,
      rows: [
        [1, 'scheduled', 410],
        [2, 'manual', 204],
      ],
    });
  });
});
