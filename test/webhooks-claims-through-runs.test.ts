import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { webhookQueue } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';

/** Hold the event loop for `ms`, as onnxruntime-node does for one model run in a worker process. */
function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * A worker process delivers webhooks on a BullMQ Worker of its own, whose locks BullMQ renews from timers
 * on the event loop. A model run longer than the lock, while an attempt is in flight, would let the
 * attempt's claim lapse, and another worker's stalled check would deliver the event again. The delivery
 * worker's claims are kept by the process's lock-renewal thread too.
 */
describe('webhooks: a delivery attempt in flight during a model run longer than WORKER_LOCK_MS', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('rvlocks-hooks');
  let redis: Redis;
  let events: WebhookEvents | undefined;
  let delivery: WebhookDeliveryWorker | undefined;
  let server: http.Server | undefined;

  before(() => {
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  });
  after(async () => {
    await delivery?.close();
    await events?.close();
    server?.closeAllConnections();
    if (server) await new Promise((r) => server!.close(r));
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('keeps the attempt claimed through the run', async () => {
    const q = webhookQueue(prefix);
    const base = `${q.prefix}:${q.name}:`;
    let lockAfterRun: { job: string; before: string | null; lock: string | null } | undefined;
    server = http.createServer((req, res) => {
      req.resume();
      void (async () => {
        const [job] = await redis.lrange(`${base}active`, 0, -1);
        const before = await redis.get(`${base}${job}:lock`);
        // A model run starts on the worker's event loop while this attempt is in flight.
        blockEventLoop(2500);
        lockAfterRun = { job: job!, before, lock: await redis.get(`${base}${job}:lock`) };
        res.end('ok');
      })();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;

    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [], logger: silentLogger });
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [], resultTtlMs: 60_000, allowPrivate: true, lockMs: 1000 });
    const id = eventIdFor('job.completed', 'job-rv-1');
    await events.ensure(id, { tenant: 'tenant-a', url, type: 'job.completed', data: { object: 'job', id: 'job-rv-1' } });
    await waitUntil(() => lockAfterRun, 15_000, 'the attempt to reach the receiver');
    expect(lockAfterRun!.before, 'claimed when the attempt began').to.be.a('string');
    expect(lockAfterRun!.lock, 'the claim of the attempt in flight lapsed during the run').to.be.a('string');
  });
});
