import { expect } from 'chai';
import path from 'node:path';
import type { Job } from '@infer/contract';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, TEST_KEY, uniquePrefix } from './helpers/platform.js';
import { freePort, OwnRedis } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

describe('processes started before Redis is up', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  const apps: Spawned[] = [];
  const redises: OwnRedis[] = [];
  before(() => {
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } });
  });
  afterEach(async () => {
    for (const a of apps.splice(0)) a.kill();
    for (const r of redises.splice(0)) await r.stop();
  });
  after(() => repo?.remove());

  it('a gateway that cannot reach Redis exits 1 at once, saying "Connection is closed"', async () => {
    const port = await freePort();
    const redisPort = await freePort();
    const gw = new Spawned('start:gateway', { REDIS_URL: `redis://127.0.0.1:${redisPort}`, QUEUE_PREFIX: uniquePrefix('rvf'), MODEL_REPOSITORY: repo.root, API_KEYS: `a:${TEST_KEY}`, PORT: String(port), HOST: '127.0.0.1' });
    apps.push(gw);
    const t0 = performance.now();
    const exit = await gw.exit(30_000);
    expect({ code: exit.code, signal: exit.signal }, gw.tail()).to.deep.equal({ code: 1, signal: null });
    expect(exit.at - t0).to.be.below(15_000);
  });

  it('a worker started before Redis waits, then serves once Redis answers: a job submitted afterwards succeeds', async () => {
    const redisPort = await freePort();
    const prefix = uniquePrefix('rvf');
    const worker = new Spawned('start:worker', { REDIS_URL: `redis://127.0.0.1:${redisPort}`, QUEUE_PREFIX: prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    apps.push(worker);
    await worker.waitForLog('redis connection error', 30_000);
    expect(worker.groupAlive()).to.equal(true);
    // Redis comes up on that port now.
    const redis = await startOnPort(redisPort);
    redises.push(redis);
    await worker.waitForLog('worker started', 30_000);
    const port = await freePort();
    const gw = new Spawned('start:gateway', { REDIS_URL: redis.url, QUEUE_PREFIX: prefix, MODEL_REPOSITORY: repo.root, API_KEYS: `a:${TEST_KEY}`, PORT: String(port), HOST: '127.0.0.1' });
    apps.push(gw);
    await gw.waitForLog('gateway listening', 30_000);
    const res = await waitUntil(async () => {
      const r = await fetch(`http://127.0.0.1:${port}/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }) });
      if (r.status === 503) return undefined;
      return r;
    }, 20_000, 'a submit that is not 503');
    const job = (await res.json()) as Job;
    expect({ status: res.status, job: job.status }, JSON.stringify(job) + worker.tail()).to.deep.equal({ status: 200, job: 'succeeded' });
    worker.signalGroup('SIGTERM');
    gw.signalGroup('SIGTERM');
    const [we, ge] = await Promise.all([worker.exit(40_000), gw.exit(20_000)]);
    expect({ worker: we.code, gateway: ge.code }).to.deep.equal({ worker: 0, gateway: 0 });
  });
});

/** An OwnRedis on a given port (the helper picks its own; its start() reuses the port it was made with). */
async function startOnPort(port: number): Promise<OwnRedis> {
  const Ctor = OwnRedis as unknown as { new (port: number, extra?: readonly string[]): OwnRedis };
  const r = new Ctor(port, []);
  await r.start();
  return r;
}
