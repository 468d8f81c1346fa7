import net from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { silentLogger } from '@infer/logger';
import { deliver, eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * docs/api.md, Delivery: "A `2xx` within 10 seconds (for the whole attempt) is
 * a delivery. Anything else fails the attempt and is retried"; "a slow
 * receiver never delays inference" / docs/webhooks.md: "a slow or dead
 * receiver never delays inference, nor other receivers' webhooks";
 * delivery.ts: "Never throws; every way an attempt can go is an
 * `AttemptOutcome`" and "One timer bounds the whole attempt".
 *
 * A receiver that answers `101 Switching Protocols` with an `Upgrade`
 * header: node's client has no 'upgrade' listener, so it destroys the
 * socket and emits 'close', but neither 'response' nor 'error'. The
 * 'close' handler clears the attempt's only timer (and its abort listener),
 * so deliver() never settles: the attempt is never logged, the event stays
 * `pending` forever, its worker slot and receiver slot are never given
 * back, and the worker's graceful close waits on it for ever.
 */

interface UpgradeReceiver {
  url: string;
  requests: number;
  close(): Promise<void>;
}

/** Answers every request `101 Switching Protocols` with an Upgrade header, as a WebSocket endpoint would. */
async function upgradeReceiver(): Promise<UpgradeReceiver> {
  const sockets = new Set<net.Socket>();
  const state = { requests: 0 };
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let head = '';
    s.on('data', (c: Buffer) => {
      head += c.toString('latin1');
      if (head.includes('\r\n\r\n') && !head.startsWith('DONE')) {
        head = 'DONE';
        state.requests++;
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    get requests() {
      return state.requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

interface BullWorkerInternals {
  closing?: Promise<void>;
  close(force: boolean): Promise<void>;
  lockManager: { close(): Promise<void> | void };
  backend: { close(force: boolean): Promise<void> };
  stalledCheckStopper?: () => void;
}

/** `p`, or 'still pending' once `ms` have passed (a bound on the wait, not a sleep). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'still pending'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'still pending'>((resolve) => (timer = setTimeout(() => resolve('still pending'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('webhooks: a receiver answering 101 Switching Protocols', function () {
  this.timeout(30_000);
  let up: UpgradeReceiver;
  before(async () => {
    up = await upgradeReceiver();
  });
  after(async () => {
    await up.close();
  });

  it('deliver() ends the attempt within its timeout as a failed, retryable attempt (it never settles)', async () => {
    const outcome = await within(deliver({ url: up.url, headers: {}, body: '{"type":"job.completed"}' }, { allowPrivate: true, timeoutMs: 300 }), 3000);
    expect(up.requests, 'the request reached the receiver').to.equal(1);
    expect(outcome, 'deliver() 3 s after a 300 ms timeout').to.not.equal('still pending');
    expect(outcome).to.include({ ok: false, final: false });
  });
});

describe('webhooks: the delivery worker against a 101 receiver', function () {
  this.timeout(30_000);
  const tenant = 'tenant-a';
  let prefix: string;
  let redis: Redis;
  let events: WebhookEvents;
  let delivery: WebhookDeliveryWorker | undefined;
  let ups: UpgradeReceiver[] = [];
  let healthy: WebhookReceiver | undefined;

  beforeEach(async () => {
    prefix = uniquePrefix('review-hooks-up');
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [50], logger: silentLogger });
  });
  afterEach(async () => {
    if (delivery) {
      // A graceful close may wait for ever on the hung attempt (the bug): force BullMQ's worker closed instead,
      // and when a graceful close is already stuck (BullMQ answers every later close with it), stop what it would have.
      const w = (delivery as unknown as { worker: BullWorkerInternals }).worker;
      if (w.closing) {
        await w.lockManager.close();
        await w.backend.close(true);
        w.stalledCheckStopper?.();
      } else {
        await w.close(true);
      }
      delivery = undefined;
    }
    await events.close();
    for (const u of ups) await u.close();
    ups = [];
    await healthy?.close();
    healthy = undefined;
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  const event = (url: string, jobId: string, who = tenant) =>
    [eventIdFor('job.completed', jobId), { tenant: who, url, type: 'job.completed' as const, data: { object: 'job' as const, id: jobId } }] as const;

  it("logs the attempt as failed and schedules the next one (the event does not stay pending with no attempt, for ever)", async () => {
    const up = await upgradeReceiver();
    ups.push(up);
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [50], resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000, timeoutMs: 300 });
    const [id, e] = event(up.url, 'job-up-1');
    await events.ensure(id, e);
    await waitUntil(() => up.requests >= 1, 10_000, 'the first attempt to reach the receiver');
    // Two attempts in all (retryDelaysMs [50]), each bounded by a 300 ms timeout: the delivery has ended well within 8 s.
    const ended = await waitUntil(async () => {
      const d = await events.log.delivery(id, tenant);
      return d && d.state !== 'pending' ? d : undefined;
    }, 8000, 'the delivery to a 101 receiver to end').catch(async (err: Error) => {
      const d = await events.log.delivery(id, tenant);
      throw new Error(`${err.message}: still ${d?.state} with ${d?.attempts.length} attempts logged after ${up.requests} requests sent`);
    });
    expect(ended.state).to.equal('failed');
    expect(ended.attempts).to.have.length(2);
  });

  it("does not hold up another tenant's deliveries for ever (two 101 receivers, two slots)", async () => {
    ups.push(await upgradeReceiver(), await upgradeReceiver());
    healthy = await startWebhookReceiver();
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [50], resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000, timeoutMs: 300, concurrency: 2, perReceiver: 1 });
    for (const [i, u] of ups.entries()) {
      const [id, e] = event(u.url, `job-up-${i}`);
      await events.ensure(id, e);
    }
    await waitUntil(() => ups.every((u) => u.requests >= 1), 10_000, 'both 101 receivers to be called');
    const [victimId, victim] = event(healthy.url, 'job-victim', 'tenant-b');
    await events.ensure(victimId, victim);
    await waitUntil(async () => (await events.log.delivery(victimId, 'tenant-b'))?.state === 'succeeded', 8000, "tenant-b's delivery to a healthy receiver (both worker slots are held by hung 101 attempts)");
    expect(healthy.deliveries).to.have.length(1);
  });

  it('a graceful close (a deploy) during an attempt to a 101 receiver ends, logging it aborted', async () => {
    const up = await upgradeReceiver();
    ups.push(up);
    // A long timeout, as in production (10 s): the close must not wait on the receiver.
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [60_000], resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000, timeoutMs: 10_000 });
    const [id, e] = event(up.url, 'job-up-close');
    await events.ensure(id, e);
    await waitUntil(() => up.requests >= 1, 10_000, 'the attempt to reach the receiver');
    const closed = await within(delivery.close().then(() => 'closed' as const), 5000);
    expect(closed, 'WebhookDeliveryWorker.close() 5 s after it was called').to.equal('closed');
    delivery = undefined;
  });
});
