import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { getJob, pollJob, postJob } from './helpers/jobs.js';
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
 * clock when the take's reply got back to it. An idle worker's blocking
 * take is sent before a run and served by Redis while the run holds the
 * worker's event loop: by the worker's clock the two would differ by the
 * rest of that run.
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

  it('is the same when the job ends as when it read running', async () => {
    // A run of a second or more; while it goes on, a short job arrives.
    const long = (await postJob(p, { model: 'cubic', input: { x: new Array(2048).fill(0) } })).job;
    await waitUntil(async () => (await getJob(p, long.id)).status === 'running', 30_000, 'the long job to run');
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
    const longEnded = await pollJob(p, long.id, 60_000);
    expect(ended.status, JSON.stringify(ended.error)).to.equal('succeeded');
    // Only a job first read running shows started_at before it ends; one seen ended has nothing to compare.
    expect(seen.status, 'the short job read running while the long one ran').to.equal('running');
    // The same instant (a take's own round trip of slack at most), not the end of the other job's run.
    const movedMs = Date.parse(ended.started_at!) - Date.parse(seen.started_at!);
    expect(
      Math.abs(movedMs),
      `started_at read ${seen.started_at} while running, ${ended.started_at} once ended; the long job ran ${Math.round(longEnded.metrics!.inference_ms)} ms and ended ${longEnded.completed_at}`,
    ).to.be.at.most(50);
    // queue_ms is the same span: from the submit to the take.
    expect(ended.metrics!.queue_ms).to.equal(Date.parse(ended.started_at!) - Date.parse(ended.created_at));
  });
});
