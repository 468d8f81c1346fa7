import { expect } from 'chai';
import type { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { silentLogger } from '@infer/logger';
import { WebhookDeliveryWorker } from '@infer/webhooks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A delivery worker's close while the connection BullMQ blocks on is between
 * two reconnect attempts, and the worker's own connection is up: what a
 * worker stopped just after Redis came back meets (each connection
 * reconnects on its own schedule), or after Redis dropped that one
 * connection. BullMQ's graceful close interrupts the blocking read and waits
 * for that connection's 'end', which a connection with no socket never
 * emits: the close never ended, and with it the worker's shutdown (a test's
 * `after` hook sat out its whole timeout).
 *
 * Here Redis drops the blocking connection (CLIENT KILL, by its address) and
 * the close starts as ioredis schedules the reconnect.
 */
describe('webhooks: closing while the blocking connection reconnects', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('hooks-close-reconnecting');
  let connection: Redis;
  let admin: Redis;

  before(() => {
    connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    admin = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    connection.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
    admin.disconnect();
  });

  it('ends promptly', async () => {
    const deliveries = new WebhookDeliveryWorker({ connection, prefix, logger: silentLogger, retryDelaysMs: [1000], resultTtlMs: 60_000, allowPrivate: false });
    const bull = (deliveries as unknown as { worker: Worker }).worker;
    const blocking = (await bull.backend.blockingConnection!.client) as unknown as Redis;
    // Idle: blocked in its fetch on that connection.
    await waitUntil(() => blocking.status === 'ready' && blocking.stream?.localPort !== undefined, 10_000, 'the blocking connection to be up');
    const closed = new Promise<number>((resolve) => {
      blocking.once('reconnecting', () => {
        const t0 = performance.now();
        void deliveries.close().then(() => resolve(performance.now() - t0));
      });
    });
    await admin.client('KILL', 'ADDR', `127.0.0.1:${blocking.stream.localPort}`);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<string>((resolve) => (timer = setTimeout(resolve, 10_000, 'still closing after 10 s')));
    const ms = await Promise.race([closed, late]).finally(() => clearTimeout(timer));
    expect(ms, 'ms the close took').to.be.a('number').below(10_000);
    expect(connection.status).to.equal('ready');
  });
});
