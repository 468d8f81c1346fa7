import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { getJob, pollJob, postJob } from './helpers/jobs.js';
import { getBatch, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A job's started_at, once a read has shown it, is a fact about the past:
 * it does not move. A read of a running job renders it from the envelope's
 * `processedOn`, which the take script stamps; the job's record (and its
 * job.started event, and queue_ms) take the same stamp, not the worker's
 * clock when the take's reply got back to it. A worker's blocking take
 * waits for the end of its own batch runs, but one sent while it runs bulk
 * work is served by Redis while that run holds the worker's event loop: by
 * the worker's clock the two would differ by the rest of that run.
 */
describe('envelopes: started_at of a job taken while another batch runs', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let worker: Spawned | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(), config: { max_batch_size: 4, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    await worker.waitForLog('worker started', 60_000);
    await p.gateway.catalog.refresh();
  });
  after(async () => {
    worker?.kill();
    await worker?.exited;
    await p?.close();
    repo?.remove();
  });

  it('a job that comes while another batch runs is taken once that run has ended (it is not running before it can)', async () => {
    const long = (await postJob(p, { model: 'cubic', input: { x: new Array(2048).fill(0) } })).job;
    await waitUntil(async () => (await getJob(p, long.id)).status === 'running', 30_000, 'the long job to run');
    const short = (await postJob(p, { model: 'cubic', input: { x: new Array(16).fill(0) } })).job;
    const meanwhile = await getJob(p, short.id);
    const ended = await pollJob(p, short.id, 60_000);
    const longEnded = await pollJob(p, long.id, 60_000);
    expect(ended.status, JSON.stringify(ended.error)).to.equal('succeeded');
    expect([meanwhile.status, (await getJob(p, long.id)).status === 'succeeded' ? 'the long job ended' : '']).to.deep.equal(['queued', 'the long job ended']);
    // Taken after the long run (its completed_at is stamped just after it), not while it held the worker.
    expect(Date.parse(ended.started_at!)).to.be.at.least(Date.parse(longEnded.completed_at!) - 5);
    expect(ended.metrics!.queue_ms).to.equal(Date.parse(ended.started_at!) - Date.parse(ended.created_at));
  });

  it('is the same when the job ends as when it read running (its take served while a bulk run holds the worker)', async () => {
    // A bulk run of a second or more; while it goes on, a short job arrives and the waiting take gets it.
    const batch = await submitBatch(p, { json: { model: 'cubic', items: [{ input: { x: new Array(2048).fill(0) } }] } });
    await waitUntil(async () => ((await getBatch(p, batch.id)).status === 'running' ? true : null), 30_000, 'the bulk run to start');
    const short = (await postJob(p, { model: 'cubic', input: { x: new Array(16).fill(0) } })).job;
    const seen = await waitUntil(
      async () => {
        const j = await getJob(p, short.id);
        return j.status === 'queued' ? null : j;
      },
      30_000,
      'the short job to be taken',
    );
    const ended: Job = await pollJob(p, short.id, 60_000);
    const bulkEnded = await waitForBatchEnd(p, batch.id, 60_000);
    expect(ended.status, JSON.stringify(ended.error)).to.equal('succeeded');
    // Only a job first read running shows started_at before it ends; one seen ended has nothing to compare.
    expect(seen.status, 'the short job read running while the bulk run went on').to.equal('running');
    // The same instant (a take's own round trip of slack at most), not the end of the other run.
    const movedMs = Date.parse(ended.started_at!) - Date.parse(seen.started_at!);
    expect(
      Math.abs(movedMs),
      `started_at read ${seen.started_at} while running, ${ended.started_at} once ended; the batch ended ${bulkEnded.completed_at}`,
    ).to.be.at.most(50);
    // queue_ms is the same span: from the submit to the take.
    expect(ended.metrics!.queue_ms).to.equal(Date.parse(ended.started_at!) - Date.parse(ended.created_at));
  });
});
