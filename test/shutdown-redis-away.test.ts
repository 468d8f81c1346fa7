import { expect } from 'chai';
import path from 'node:path';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, TEST_KEY, uniquePrefix } from './helpers/platform.js';
import { freePort, OwnRedis } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';

/**
 * SIGTERM to the process group while Redis is away (a Redis failover or
 * restart during a rolling deploy). Neither process holds any work: the
 * graceful shutdown has nothing to finish, so it must end promptly with
 * exit code 0, not sit out its deadline and exit 1.
 */

describe('SIGTERM while Redis is away', function () {
  this.timeout(90_000);
  let redis: OwnRedis;
  let repo: TempModelRepo;
  const prefix = uniquePrefix('rf-away');
  const apps: Spawned[] = [];

  before(async () => {
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } });
    redis = await OwnRedis.start();
  });
  afterEach(() => {
    for (const a of apps) a.kill();
  });
  after(async () => {
    await redis?.stop();
    repo?.remove();
  });

  it('an idle worker signalled while Redis is down exits 0, well within its 30 s deadline', async () => {
    await redis.start();
    const worker = new Spawned('start:worker', { REDIS_URL: redis.url, QUEUE_PREFIX: prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    apps.push(worker);
    await worker.waitForLog('worker started', 30_000);
    await redis.stop();
    await worker.waitForLog('redis connection error', 10_000);
    const t0 = performance.now();
    worker.signalGroup('SIGTERM');
    await worker.waitForLog('shutting down', 5_000);
    const exit = await worker.exit(40_000);
    const took = Math.round(exit.at - t0);
    expect({ code: exit.code, signal: exit.signal, overDeadline: worker.logged('shutdown took longer').length > 0 }, `exited after ${took} ms:${worker.tail()}`).to.deep.equal({
      code: 0,
      signal: null,
      overDeadline: false,
    });
    expect(took, 'ms from SIGTERM to exit').to.be.below(10_000);
  });

  it('a gateway signalled while Redis is down exits 0 promptly', async () => {
    await redis.start();
    const port = await freePort();
    const gateway = new Spawned('start:gateway', {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      MODEL_REPOSITORY: repo.root,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
    });
    apps.push(gateway);
    await gateway.waitForLog('gateway listening', 30_000);
    await redis.stop();
    await gateway.waitForLog('redis connection error', 10_000);
    const t0 = performance.now();
    gateway.signalGroup('SIGTERM');
    const exit = await gateway.exit(20_000);
    expect({ code: exit.code, signal: exit.signal }, gateway.tail()).to.deep.equal({ code: 0, signal: null });
    expect(exit.at - t0).to.be.below(10_000);
  });
});
