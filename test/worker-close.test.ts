import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { createWorker } from '../apps/worker/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * An idle worker waits on each of its queues with a blocking read (BZPOPMIN
 * on the queue's marker) that times out after `blockSeconds` and looks
 * again. Long reads keep an idle worker cheap; they must not make it slow to
 * stop: `close()` interrupts them, for the interactive queues (the worker's
 * own blocking connection) and the bulk ones (BullMQ's) alike.
 */
describe('worker: stopping while idle', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('close');
  let admin: Redis;

  before(() => {
    admin = new Redis(TEST_REDIS_URL);
  });

  after(async () => {
    admin.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  const blocked = async () => Number(/blocked_clients:(\d+)/.exec(String(await admin.info('clients')))?.[1] ?? NaN);

  it('does not wait for its blocking reads: close() returns long before they would time out', async () => {
    const config = loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, WORKER_METRICS_PORT: '0' });
    const models = await ModelRepository.load(config.modelRepository);
    const before = await blocked();
    const worker = await createWorker(config, silentLogger, { models, blockSeconds: 10 });
    let closed = false;
    try {
      // Every served version's interactive and bulk queue is waited on: two blocked reads each.
      const queues = 2 * models.all().length;
      await waitUntil(async () => (await blocked()) - before >= queues, 10_000, `${queues} blocked reads`);
      const started = performance.now();
      await worker.close();
      closed = true;
      const ms = performance.now() - started;
      expect(ms, 'close() of an idle worker, its reads blocking for 10 s').to.be.below(3000);
      await waitUntil(async () => (await blocked()) <= before, 5_000, 'its blocked reads to be gone');
    } finally {
      if (!closed) await worker.close();
      await models.close();
    }
  });
});
