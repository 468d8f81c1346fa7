import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { EMBED_ROWS, embedSumReference } from '../scripts/build-models.js';
import { flatten, pollJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { elapse, waitUntil } from './helpers/wait.js';

/**
 * An envelope split across micro-batches, holding a poison job, a job canceled while
 * queued and a job past its Cancel-After deadline; every job keeps its own promise, and the queue's
 * counts (MAX_QUEUE_DEPTH's, TENANT_MAX_QUEUED's) come back to zero.
 */
const idsOf = (seed: number): number[] => Array.from({ length: 4 }, (_, k) => (seed * 7 + k * 3) % EMBED_ROWS);
const poison = [1, EMBED_ROWS + 2, 1, 2];
const job = (ids: readonly number[]) => ({ model: 'embed-sum', input: { ids: [...ids] } });

describe('the jobs of a split envelope, each with its own fate', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  before(() => {
    repo = tempModelRepo({ 'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') } });
  });
  beforeEach(async () => {
    p = await startPlatform({ models: repo.root, worker: false, env: { TENANT_MAX_QUEUED: '100', MAX_QUEUE_DEPTH: '100' } });
    redis = new Redis(p.config.redisUrl);
  });
  afterEach(async () => {
    redis?.disconnect();
    await p?.close();
  });
  after(() => repo?.remove());

  it('poison, cancel and deadline each touch only their own job; counts return to 0', async () => {
    const first = await Promise.all(Array.from({ length: 5 }, (_, i) => postJob(p, job(idsOf(i)))));
    const seeds = Array.from({ length: 12 }, (_, i) => 100 + i);
    const second = await Promise.all(
      seeds.map((s, i) =>
        p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(job(i === 9 ? poison : idsOf(s))), headers: i === 4 ? { 'cancel-after': '150ms' } : {} }).then(async (r) => (await r.json()) as Job),
      ),
    );
    const canceled = await p.api(`/v1/jobs/${second[2]!.id}/cancel`, { method: 'POST' });
    expect(canceled.status).to.equal(200);
    await elapse(400, 'the Cancel-After deadline of job 4 passes while no worker runs');
    await p.startWorker();
    const ended1 = await Promise.all(first.map((s) => pollJob(p, s.job.id)));
    const ended2 = await Promise.all(second.map((j) => pollJob(p, j.id)));
    for (const [i, j] of ended1.entries()) {
      expect(j.status, JSON.stringify(j.error)).to.equal('succeeded');
      expect(flatten((j.output as Record<string, unknown>).vector)).to.deep.equal(embedSumReference(idsOf(i)));
    }
    for (const [i, j] of ended2.entries()) {
      if (i === 9) {
        expect(j.status).to.equal('failed');
        expect(j.error!.code).to.equal('inference_failed');
      } else if (i === 2) {
        expect([j.status, j.error!.code, j.started_at]).to.deep.equal(['canceled', 'canceled', null]);
      } else if (i === 4) {
        expect([j.status, j.error!.code, j.started_at, j.output]).to.deep.equal(['canceled', 'deadline_exceeded', null, null]);
      } else {
        expect(j.status, `job ${i}: ${JSON.stringify(j.error)}`).to.equal('succeeded');
        expect(flatten((j.output as Record<string, unknown>).vector)).to.deep.equal(embedSumReference(idsOf(seeds[i]!)));
        expect(j.metrics!.batch_size).to.be.at.least(1);
      }
    }
    const k = interactiveKeys(p.prefix, 'embed-sum', '1');
    await waitUntil(async () => (await redis.llen(k.active)) === 0 && (await redis.llen(k.wait)) === 0, 10_000, 'queue empty');
    expect(Number((await redis.get(k.queued)) ?? 0), 'queued instances').to.equal(0);
    const tenants = await redis.hgetall(k.tenants);
    expect(Object.values(tenants).map(Number).filter((n) => n !== 0), JSON.stringify(tenants)).to.deep.equal([]);
    expect(await redis.hlen(k.index), 'index').to.equal(0);
    expect(await redis.zcard(k.deadlines), 'deadlines').to.equal(0);
  });
});
