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
 * BullMQ's Worker takes the next delivery itself: inside moveToFinished when a run ends, or with
 * moveToActive. Redis runs that take, locking the next delivery for lockMs, as soon as it is sent; its
 * reply is read only when the event loop turns again. The delivery worker counts every take of its
 * BullMQ Worker (tokens `<worker id>:<n>`) as in flight, so a model run that starts right after the take
 * was sent does not let the next delivery's lock lapse (and a stalled check deliver it again).
 */
describe('webhooks: a delivery taken by BullMQ just before a model run', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('rvl2-hook');
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

  it('keeps the lock of the delivery taken by the previous run’s end through the run', async () => {
    const q = webhookQueue(prefix);
    const base = `${q.prefix}:${q.name}:`;
    const delivered = new Map<string, number>();
    server = http.createServer((req, res) => {
      const id = String(req.headers['webhook-id']);
      delivered.set(id, (delivered.get(id) ?? 0) + 1);
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;

    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [], logger: silentLogger });
    const first = eventIdFor('job.completed', 'job-rvl2-1');
    const second = eventIdFor('job.completed', 'job-rvl2-2');
    await events.ensure(first, { tenant: 'tenant-a', url, type: 'job.completed', data: { object: 'job', id: 'job-rvl2-1' } });
    await events.ensure(second, { tenant: 'tenant-a', url, type: 'job.completed', data: { object: 'job', id: 'job-rvl2-2' } });

    // When the first run's end (moveToFinished, which takes the next job) has been sent, a model run
    // starts on the event loop (onnxruntime-node calls the model from a setImmediate).
    let seen: { active: string[]; lock: string | null } | undefined;
    let armed = false;
    const send = redis.sendCommand.bind(redis);
    (redis as unknown as { sendCommand: typeof send }).sendCommand = ((command, stream) => {
      const reply = send(command, stream);
      const c = command as unknown as { name: string; args: unknown[] };
      if (!armed && (c.name === 'evalsha' || c.name === 'eval') && c.args.some((a) => typeof a === 'string' && a.endsWith(':completed'))) {
        armed = true;
        setImmediate(() => {
          blockEventLoop(2500);
          // Read the state Redis is in after the run, before this process answers anything more.
          void Promise.all([redis.lrange(`${base}active`, 0, -1), redis.get(`${base}${second}:lock`)]).then(([active, lock]) => {
            seen = { active, lock };
          });
        });
      }
      return reply;
    }) as typeof send;

    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [], resultTtlMs: 60_000, allowPrivate: true, lockMs: 1000, concurrency: 1 });
    await waitUntil(() => seen, 15_000, 'the first run to end and the model run to finish');
    expect(seen!.active, 'the first run’s end took the second delivery (it is active)').to.include(second);
    expect(seen!.lock, 'the lock of the delivery taken just before the run lapsed during it').to.be.a('string');
  });
});
