import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { webhookQueue } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { blockEventLoop, waitUntil } from './helpers/wait.js';

/**
 * A worker process delivers webhooks on a BullMQ Worker of its own, whose locks BullMQ renews from timers
 * on the event loop. A model run longer than the lock would let an attempt's claim lapse, and another
 * worker's stalled check would deliver the event again. The delivery worker's claims are kept by the
 * process's lock-renewal thread: the attempts in flight, and the delivery BullMQ takes by itself (inside
 * moveToFinished when a run ends, or with moveToActive), whose reply is read only when the event loop
 * turns again: every take of its BullMQ Worker (tokens `<worker id>:<n>`) counts as in flight.
 */
describe('webhooks: delivery claims through a model run longer than WORKER_LOCK_MS', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('hook-claims');
  let redis: Redis;
  let events: WebhookEvents | undefined;
  let delivery: WebhookDeliveryWorker | undefined;
  let server: http.Server | undefined;

  beforeEach(() => {
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  });
  afterEach(async () => {
    await delivery?.close();
    await events?.close();
    server?.closeAllConnections();
    if (server) await new Promise((r) => server!.close(r));
    [delivery, events, server] = [undefined, undefined, undefined];
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
        blockEventLoop(5000);
        lockAfterRun = { job: job!, before, lock: await redis.get(`${base}${job}:lock`) };
        res.end('ok');
      })();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;

    events = new WebhookEvents({ connection: redis, prefix, resultTtlMs: 60_000, retryDelaysMs: [], logger: silentLogger });
    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [], resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000 });
    const id = eventIdFor('job.completed', 'job-rv-1');
    await events.ensure(id, { tenant: 'tenant-a', url, type: 'job.completed', data: { object: 'job', id: 'job-rv-1' } });
    await waitUntil(() => lockAfterRun, 15_000, 'the attempt to reach the receiver');
    expect(lockAfterRun!.before, 'claimed when the attempt began').to.be.a('string');
    expect(lockAfterRun!.lock, 'the claim of the attempt in flight lapsed during the run').to.be.a('string');
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
          blockEventLoop(5000);
          // Read the state Redis is in after the run, before this process answers anything more.
          void Promise.all([redis.lrange(`${base}active`, 0, -1), redis.get(`${base}${second}:lock`)]).then(([active, lock]) => {
            seen = { active, lock };
          });
        });
      }
      return reply;
    }) as typeof send;

    delivery = new WebhookDeliveryWorker({ connection: redis, prefix, logger: silentLogger, retryDelaysMs: [], resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000, concurrency: 1 });
    await waitUntil(() => seen, 15_000, 'the first run to end and the model run to finish');
    expect(seen!.active, 'the first run’s end took the second delivery (it is active)').to.include(second);
    expect(seen!.lock, 'the lock of the delivery taken just before the run lapsed during it').to.be.a('string');
  });
});
