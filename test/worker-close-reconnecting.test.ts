import { expect } from 'chai';
import { Redis } from 'ioredis';
import { BatchStore } from '@infer/batch-store';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { BulkWorker } from '../apps/worker/src/bulk/bulk-worker.js';
import { InteractiveWorker } from '../apps/worker/src/interactive/interactive-worker.js';
import { SHIPPED_MODELS } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Workers stopped just after Redis came back, while the connection their idle
 * fetch blocks on is still between two reconnect attempts. Dropping an
 * ioredis client in that state clears its retry timer without a 'close'
 * event: it stays "reconnecting" for good, and what it queued meanwhile (the
 * fetch's read, a QUIT after it) is neither sent nor failed. The last CI run
 * hung that way in a test's after-all hook: a worker closed right after its
 * Redis was restarted waited for ever on the bulk fetch's connection.
 *
 * Each case holds the connections two seconds between reconnect attempts, so
 * that Redis is back well before they try again and the close lands in that gap.
 */
describe('a worker closed while its blocking connection reconnects', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let models: ModelRepository;
  const connections: Redis[] = [];
  const prefix = `close-reconnecting-${process.pid}`;

  before(async () => {
    redis = await OwnRedis.start();
    models = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
  });
  after(async () => {
    for (const c of connections) c.disconnect();
    await models?.close();
    await redis?.stop();
  });

  function connect(options: { slowReconnect: boolean }): Redis {
    const c = new Redis(redis.url, { maxRetriesPerRequest: null, ...(options.slowReconnect ? { retryStrategy: () => 2000 } : {}) });
    c.on('error', () => undefined);
    connections.push(c);
    return c;
  }

  function offlineQueued(c: Redis): number {
    return (c as unknown as { offlineQueue: { length: number } }).offlineQueue.length;
  }

  it("bulk: closes, BullMQ's worker too (it does not wait for ever on the fetch's connection)", async () => {
    // BullMQ's blocking connection is a duplicate of this one: the same reconnect strategy.
    const connection = connect({ slowReconnect: true });
    const worker = new BulkWorker({
      model: models.resolve('mlp'),
      connection,
      store: new BatchStore(connection, { prefix: `{${prefix}}`, resultTtlMs: 60_000 }),
      logger: silentLogger,
      prefix,
      lockMs: 30_000,
      blockSeconds: 1,
    });
    worker.start();
    const bull = worker['consumer'].bull;
    // The idle fetch blocks on BullMQ's own connection: wait until it is open.
    const blocking = await waitUntil(async () => bull.backend.blockingConnection && (await bull.backend.blockingConnection.client), 10_000, 'the blocking connection');
    await waitUntil(() => blocking.status === 'ready', 10_000, 'the blocking connection ready');

    await redis.stop();
    await waitUntil(() => blocking.status === 'reconnecting', 10_000, 'the blocking connection to wait between reconnect attempts');
    // A read sent now waits in the connection's offline queue. In the run that hung it was the fetch loop's
    // next read; sent here by hand so that the case does not depend on when the loop tries again.
    void blocking.bzpopmin(`{${prefix}}:nothing`, 1).catch(() => undefined);
    expect(offlineQueued(blocking as Redis)).to.be.greaterThan(0);
    await redis.start();
    // The case under test: Redis answers, this connection has not reconnected yet.
    expect(blocking.status).to.equal('reconnecting');

    let closed = false;
    bull.on('closed', () => (closed = true));
    await worker.close();
    expect(closed, "BullMQ's worker closed").to.equal(true);
  });

  it('interactive: the blocked take ends with the close, nothing taken (the close does not wait out its bound on it)', async () => {
    const connection = connect({ slowReconnect: false });
    // The blocking connection is a duplicate of the store's: its reconnect strategy.
    const storeConnection = connect({ slowReconnect: true });
    const worker = new InteractiveWorker({
      model: models.resolve('mlp'),
      connection,
      storeConnection,
      prefix,
      lockMs: 30_000,
      resultTtlMs: 60_000,
      logger: silentLogger,
      blockSeconds: 1,
    });
    worker.start();
    const blocking = await waitUntil(() => worker['blocking'], 10_000, 'the idle take');
    await waitUntil(() => blocking.status === 'ready', 10_000, 'the blocking connection ready');
    let loopEnded = false;
    void worker['consumer']['loop']!.then(() => (loopEnded = true));

    await redis.stop();
    await waitUntil(() => blocking.status === 'reconnecting', 10_000, 'the blocking connection to wait between reconnect attempts');
    await redis.start();
    // The case under test: the worker's command connection is back (the consumer judges by it how long a take
    // in flight may take), the take's connection has not reconnected yet.
    await waitUntil(() => connection.status === 'ready', 10_000, 'the command connection back');
    expect(blocking.status).to.equal('reconnecting');

    await worker.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(loopEnded, 'the fetch loop ended, not given up on').to.equal(true);
  });
});
