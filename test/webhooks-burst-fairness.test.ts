import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/webhooks.md: "Each worker keeps at most 20 attempts in flight to one
 * receiver (200 in all), so one receiver that hangs does not hold up
 * others'"; docs/api.md: "a receiver's further events wait their turn, about
 * a second at a time, without using up attempts, so one receiver that hangs
 * under a burst of events does not hold up others'".
 *
 * The existing test bursts 200 events. Here a bigger burst (a batch of a few
 * thousand rows' worth of events, or a busy tenant's minute) to one hanging
 * receiver: each of its waiting events is fetched, looked at and put back
 * every ~1–1.5 s, and they all share one FIFO wait list with every other
 * tenant's events.
 */
describe('webhooks: one hanging receiver under a large burst', function () {
  this.timeout(60_000);
  const prefix = uniquePrefix('rh-burst');
  let redis: Redis;
  let events: WebhookEvents;
  let worker: WebhookDeliveryWorker | undefined;
  const sockets = new Set<Socket>();
  let hangServer: http.Server;
  let okServer: http.Server;
  let hangUrl: string;
  let okUrl: string;
  let okAt = 0;
  let hanging = 0;
  let maxHanging = 0;

  before(async () => {
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [3600_000], logger: silentLogger });
    hangServer = http.createServer((req, res) => {
      hanging++;
      maxHanging = Math.max(maxHanging, hanging);
      // The response's close: its connection went (a request's 'close' comes once its body is read).
      res.on('close', () => hanging--);
      req.resume();
    });
    okServer = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        okAt ||= Date.now();
        res.writeHead(204).end();
      });
    });
    for (const s of [hangServer, okServer]) s.on('connection', (c) => (sockets.add(c), c.on('close', () => sockets.delete(c))));
    await Promise.all([hangServer, okServer].map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
    hangUrl = `http://127.0.0.1:${(hangServer.address() as AddressInfo).port}/hook`;
    okUrl = `http://127.0.0.1:${(okServer.address() as AddressInfo).port}/hook`;
  });
  after(async () => {
    for (const c of sockets) c.destroy();
    await worker?.close();
    await events?.close();
    await Promise.all([hangServer, okServer].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    redis?.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it("another tenant's event is delivered within a few seconds while 4000 events of a hanging receiver wait their turn", async () => {
    const N = 4000;
    const burst = Array.from({ length: N }, (_, i) => ({
      id: eventIdFor('job.completed', `burst-${i}`),
      event: { tenant: 'tenant-a', url: hangUrl, type: 'job.completed' as const, data: { object: 'job' as const, id: `burst-${i}` } },
    }));
    for (let i = 0; i < N; i += 500) await events.ensureMany(burst.slice(i, i + 500));
    worker = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [3600_000], resultTtlMs: 60_000, allowPrivate: true, timeoutMs: 20_000 });
    // The hanging receiver holds its 20 slots; the rest of its events cycle through the wait list.
    await waitUntil(() => maxHanging >= 20, 20_000, 'the hanging receiver to hold its slots');
    // Let the cycling settle in (each waiting event goes back after ~1–1.5 s): then the other tenant's event comes.
    await waitUntil(async () => (await redis.zcard(`${prefix}:{webhooks}:webhooks:delayed`)) > N / 2, 20_000, 'most of the burst put back at least once');
    const sentAt = Date.now();
    await events.ensure(eventIdFor('job.completed', 'other'), { tenant: 'tenant-b', url: okUrl, type: 'job.completed', data: { object: 'job', id: 'other' } });
    await waitUntil(() => okAt > 0, 30_000, "the other tenant's delivery");
    const latency = okAt - sentAt;
    expect(maxHanging, 'attempts in flight to the hanging receiver').to.be.at.most(20);
    expect(latency, "ms before the other tenant's event was delivered").to.be.below(3000);
  });
});
