import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { WorkerHeartbeat } from '@infer/fleet';
import { expectProblem, expectRetryAfter, postJob, QueueProbe, runJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Readiness per model version: workers report what they serve through a
 * heartbeat; a job for a version that live workers exist for but none
 * serves is refused (503 unavailable), instead of waiting in a queue nobody
 * reads; /readyz lists every version's readiness.
 */

const mlpJob = { model: 'mlp', input: { features: new Array(64).fill(0.25) } };
const ocrJob = { model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: Buffer.alloc(3 * 48 * 192 * 4).toString('base64') } } };

interface Readyz {
  status: string;
  models: Record<string, Record<string, { ready: boolean; workers_ready: number }>>;
}

describe('readiness per model version', function () {
  this.timeout(30_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  before(() => {
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') }, 'ocr-cls': { from: path.join(SHIPPED_MODELS, 'ocr-cls') } });
  });
  afterEach(async () => {
    await p?.close();
  });
  after(() => repo?.remove());

  const readyz = async (): Promise<Readyz> => {
    const res = await fetch(`${p.baseUrl}/readyz`);
    expect(res.status).to.equal(200);
    return (await res.json()) as Readyz;
  };

  it('refuses jobs and batches for a version no live worker serves, with 503 and Retry-After, and queues nothing', async () => {
    p = await startPlatform({ models: repo.root, env: { WORKER_MODELS: 'mlp' } });
    const probe = new QueueProbe(TEST_REDIS_URL, p.prefix, [['ocr-cls', '1']]);
    try {
      const before = await probe.snapshot();
      const refused = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(ocrJob) });
      expectRetryAfter(refused);
      const problem = await expectProblem(refused, 503, 'unavailable');
      expect(problem.detail).to.match(/ocr-cls.*version 1/);
      const batch = await p.api('/v1/batches?model=ocr-cls', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: JSON.stringify({ input: ocrJob.input }) + '\n' });
      await expectProblem(batch, 503, 'unavailable');
      await probe.expectNothingNew(before);
    } finally {
      await probe.close();
    }
    expect((await runJob(p, mlpJob)).status).to.equal('succeeded');
    const r = await readyz();
    expect(r.models.mlp).to.deep.equal({ '1': { ready: true, workers_ready: 1 }, '2': { ready: true, workers_ready: 1 } });
    expect(r.models['ocr-cls']).to.deep.equal({ '1': { ready: false, workers_ready: 0 } });
  });

  it('queues for every version while no worker is live at all (the fleet is restarting), and the jobs run when one comes', async () => {
    p = await startPlatform({ models: repo.root, worker: false });
    const r = await readyz();
    expect(r.models['ocr-cls']).to.deep.equal({ '1': { ready: true, workers_ready: 0 } });
    const { res, job } = await postJob(p, ocrJob);
    expect(res.status).to.equal(202);
    await p.startWorker();
    const ended = await fetch(`${p.baseUrl}/v1/jobs/${job.id}`, { headers: { authorization: 'Bearer test-key-a', prefer: 'wait=20' } });
    expect(((await ended.json()) as { status: string }).status).to.equal('succeeded');
  });

  it('stops counting a worker that died within a few seconds, and one that stopped at once', async () => {
    p = await startPlatform({ models: repo.root, env: { WORKER_MODELS: 'mlp' } });
    const redis = new Redis(TEST_REDIS_URL);
    // A second worker serving ocr-cls that dies: its heartbeat stops without leaving the fleet.
    const ghost = new WorkerHeartbeat(redis, p.prefix, 'ghost', () => [{ model: 'ocr-cls', version: '1', state: 'ready' }]);
    try {
      await ghost.start();
      await waitUntil(async () => (await readyz()).models['ocr-cls']!['1']!.workers_ready === 1, 5000, 'the ghost worker to count');
      expect((await postJob(p, ocrJob)).res.status).to.equal(202);
      // Dies: no more beats (as a killed process), no goodbye.
      await ghost.stop({ leave: false });
      await waitUntil(async () => (await readyz()).models['ocr-cls']!['1']!.workers_ready === 0, 12_000, 'the dead worker to stop counting');
      await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(ocrJob) }), 503, 'unavailable');
      // The live worker stops gracefully: it leaves the fleet at once, and with no worker left, jobs queue again.
      await p.worker!.close();
      await waitUntil(async () => (await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(mlpJob) })).status === 202, 5000, 'mlp jobs to queue with no worker live');
    } finally {
      redis.disconnect();
    }
  });
});
