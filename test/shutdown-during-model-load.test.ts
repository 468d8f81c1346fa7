import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { TEST_REDIS_URL, deletePrefix, uniquePrefix } from './helpers/platform.js';
import { deepMlpModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README "Stopping a process": SIGTERM starts a graceful shutdown; a worker exits 0 within 30 s. Here the
 * SIGTERM comes while the worker is loading a version that was copied into its repository while it served
 * (a model load holds the event loop, like a run). The worker must exit 0, leave the fleet (no `loading`
 * or `ready` entry of it left behind), and must not start serving the version after its shutdown began.
 */
describe('lifecycle: SIGTERM to a worker while it loads a version found in its repository', function () {
  this.timeout(90_000);
  let repo: TempModelRepo;
  let prefix: string;
  let redis: Redis;
  let worker: Spawned | undefined;

  before(() => {
    repo = servedMlpRepo(['1']);
    prefix = uniquePrefix('load-sigterm');
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    worker?.kill();
    await worker?.exited;
    redis?.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
    repo?.remove();
  });

  it('exits 0, leaves the fleet, and serves nothing new after the signal', async () => {
    worker = new Spawned('start:worker', {
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      MODEL_REPOSITORY: repo.root,
      WORKER_METRICS_PORT: '0',
      MODEL_POLL_SECONDS: '0.2',
    });
    await worker.waitForLog('worker started', 60_000);
    // A bigger model copied in: its load begins within 0.2 s and reads `loading` in the worker's heartbeat.
    const dir = path.join(repo.root, 'slow', '1');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(repo.root, 'slow', 'config.json'), JSON.stringify({ max_batch_size: 256, max_delay_ms: 2 }));
    writeFileSync(path.join(dir, 'model.onnx'), deepMlpModel());
    const workerKey = await waitUntil(async () => {
      const ids = await redis.zrange(`${prefix}:{fleet}:workers`, '0', '-1');
      for (const id of ids) {
        const v = await redis.get(`${prefix}:{fleet}:worker:${id}`);
        if (v && v.includes('slow')) return `${prefix}:{fleet}:worker:${id}`;
      }
      return undefined;
    }, 30_000, 'the worker to report the new version (loading)');
    const reported = (await redis.get(workerKey)) ?? '';
    // Mostly caught loading; a quick load may be done already (then this is a plain SIGTERM, still checked).
    expect(reported).to.match(/"model":"slow","version":"1","state":"(loading|ready)"/);
    const signalledAt = worker.lines.length;
    worker.signalGroup('SIGTERM');
    const exit = await worker.exit(35_000);
    expect({ code: exit.code, signal: exit.signal }, `${worker.tail()}\n  heartbeat then: ${reported}`).to.deep.equal({ code: 0, signal: null });
    const after = worker.lines.slice(signalledAt);
    const shutdownAt = after.findIndex((l) => typeof l.msg === 'string' && l.msg.startsWith('shutting down'));
    expect(shutdownAt).to.be.at.least(0);
    const servedAfter = after.slice(shutdownAt).filter((l) => l.msg === 'serving model version');
    expect(servedAfter, 'a version started serving after the shutdown began').to.deep.equal([]);
    expect(after.filter((l) => (l.level as number) >= 50), 'errors logged').to.deep.equal([]);
    expect(await redis.exists(workerKey), 'the worker left the fleet').to.equal(0);
    expect(await redis.zrange(`${prefix}:{fleet}:workers`, '0', '-1')).to.deep.equal([]);
  });
});
