import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { elapse, waitUntil } from './helpers/wait.js';

/**
 * README, "Stopping a process": while Redis is away a stopping process
 * cannot write what it finished, and waits for Redis up to its deadline. So
 * a worker SIGTERMed mid-run as Redis dies (a deploy meeting a Redis
 * restart, AOF on) whose Redis is back well within its 30 s deadline writes
 * its batch and exits 0 soon after. Its close must not wait for Redis
 * before it starts closing its consumers (the fleet goodbye, the model look
 * and the deadline sweep in flight all queue behind the outage): started
 * only once Redis was back, each consumer judged by the connection's state
 * that a take stuck on a dropped connection deserved its whole 10 s bound,
 * and the worker hit its deadline (exit 1).
 */
const WORKER_DEADLINE_MS = 30_000;
const OUTAGE_MS = 20_000;

describe('shutdown: a worker stopped mid-run as Redis dies, Redis back within the deadline', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let dir: string;
  let redis: OwnRedis;
  let p: TestPlatform;
  let worker: Spawned | undefined;
  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(), config: { max_batch_size: 4, max_delay_ms: 2 } } });
    dir = mkdtempSync(path.join(os.tmpdir(), 'rp-blip-'));
    redis = await OwnRedis.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
    p = await startPlatform({ redisUrl: redis.url, models: repo.root, worker: false });
  });
  after(async () => {
    worker?.kill();
    await redis?.start().catch(() => undefined);
    await p?.close().catch(() => undefined);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
    repo?.remove();
  });

  it('finishes its shutdown once Redis is back (the batch written, exit 0), not held to the 30 s deadline (exit 1)', async () => {
    worker = new Spawned('start:worker', { REDIS_URL: redis.url, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0', HOST: '127.0.0.1' });
    await worker.waitForLog('worker started', 30_000);
    await p.gateway.catalog.refresh();
    // A run of a second or so (len 2048).
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'cubic', input: { x: new Array(2048).fill(0) } }) });
    expect(res.status).to.equal(202);
    const { id } = (await res.json()) as Job;
    await waitUntil(async () => ((await (await p.api(`/v1/jobs/${id}`)).json()) as Job).status === 'running', 20_000, 'the job to run');
    // Redis dies, and the deploy's SIGTERM reaches the worker in the middle of its run.
    await redis.stop();
    const t0 = performance.now();
    worker.signalGroup('SIGTERM');
    await worker.waitForLog('shutting down', 10_000);
    await elapse(OUTAGE_MS - (performance.now() - t0), 'Redis away for a 20 s restart, back 10 s before the worker deadline');
    await redis.start();
    const back = performance.now();
    const exit = await worker.exit(WORKER_DEADLINE_MS + 10_000);
    // The batch it finished is written (its run, not a rerun after a lock lapse: no other worker exists).
    await waitUntil(async () => {
      const r = await p.api(`/v1/jobs/${id}`).catch(() => undefined);
      return r?.status === 200 && ((await r.json()) as Job).status === 'succeeded';
    }, 10_000, 'the job to end');
    expect(worker.logged('shutdown took longer'), worker.tail()).to.have.length(0);
    expect({ code: exit.code, signal: exit.signal }, `exit ${Math.round(exit.at - back)} ms after Redis was back${worker.tail()}`).to.deep.equal({ code: 0, signal: null });
    expect(exit.at - back, 'ms from Redis back to the exit (its reconnect backs off up to 2 s)').to.be.below(8_000);
  });
});
