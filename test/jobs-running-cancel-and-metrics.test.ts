import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, jobKeys, newJobId, queueTag, type EnvelopeJob, type Job } from '@infer/contract';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { pollJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md: cancel "a running job's output is discarded", and `canceled`
 * is final. The canceled record lives RESULT_TTL_SECONDS; a run may outlast
 * it (a long model, a short TTL). When the worker's run then ends, its output
 * must not come in as a second end. The record's expiry is played here by
 * deleting it while the run goes on, on a real worker process (ONNX Runtime
 * holds a worker's event loop during a run, so the test's own requests must
 * come from another process than the run's).
 */
describe('jobs: a running job canceled', function () {
  this.timeout(90_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let worker: Spawned | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(), config: { max_batch_size: 4, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    await worker.waitForLog('worker started', 60_000);
    await p.gateway.catalog.refresh();
  });
  after(async () => {
    worker?.kill();
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('its canceled record gone before its run ends, it stays ended: the output of the run the cancel discarded never shows up as succeeded', async () => {
    // len 2048: a run of seconds, far longer than what the test does while it goes on.
    const { job } = await postJob(p, { model: 'cubic', input: { x: new Array(2048).fill(0) } });
    await waitUntil(async () => ((await (await p.api(`/v1/jobs/${job.id}`)).json()) as Job).status === 'running', 20_000, 'the job to be running');
    const res = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(((await res.json()) as Job).status).to.equal('canceled');
    // RESULT_TTL_SECONDS passes while the run goes on: the canceled record expires.
    expect(await redis.del(jobKeys(p.prefix, job.id).record)).to.equal(1);
    const k = interactiveKeys(p.prefix, 'cubic', '1');
    expect(await redis.llen(k.active), 'the run still going').to.equal(1);
    await waitUntil(async () => (await redis.llen(k.active)) === 0, 60_000, "the worker's run to end");
    const after = await p.api(`/v1/jobs/${job.id}`);
    const text = await after.text();
    // Gone with its record (404), as any expired job: never succeeded.
    expect({ status: after.status, body: text }).to.deep.equal({ status: 404, body: text });
  });

  // README, Logs: one `job ended` line per job a worker runs, once its end is written.
  it('its worker\'s "job ended" line says the run was discarded, not that the job succeeded', async () => {
    const { job } = await postJob(p, { model: 'cubic', input: { x: new Array(2048).fill(0) } });
    await waitUntil(async () => ((await (await p.api(`/v1/jobs/${job.id}`)).json()) as Job).status === 'running', 20_000, 'the job to be running');
    const res = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(((await res.json()) as Job).status).to.equal('canceled');
    const k = interactiveKeys(p.prefix, 'cubic', '1');
    await waitUntil(async () => (await redis.llen(k.active)) === 0, 60_000, "the worker's run to end");
    const final = (await (await p.api(`/v1/jobs/${job.id}`)).json()) as Job;
    expect(final.status).to.equal('canceled');
    // Its one line says the run was discarded, not how it ran (written once FINISH has answered).
    await waitUntil(() => worker!.lines.some((l) => l.msg === 'job ended' && l.jobId === job.id), 10_000, 'the job\'s "job ended" line');
    const lines = worker!.lines.filter((l) => l.msg === 'job ended' && l.jobId === job.id);
    expect(lines.map((l) => l.status), `the "job ended" lines of job ${job.id}, which ended canceled`).to.deep.equal(['discarded']);
  });
});

/**
 * docs/api.md, the Job's `metrics`: `inference_ms` is the ONNX Runtime time
 * of the job's batch. A take that overshoots the batch (an envelope of 2,
 * then one of 4, for a max_batch_size of 4) puts two micro-batches in flight at once; one
 * thread runs both, one after the other, and each must report its own run,
 * not the wait behind the other's.
 */
describe('jobs: per-job metrics of two micro-batches in flight together', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(), config: { max_batch_size: 4, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it("inference_ms of each batch is that batch's own ONNX Runtime time: together they fit in the wall time they ran in", async () => {
    const model = p.gateway.models.resolve('cubic', '1');
    // The gateway's own envelope writer: jobs added in one turn travel as one envelope. One of 2, then one of 4:
    // one take gets both, the 4 does not fit the room the 2 leave, so it is a batch of its own, due at once.
    const writer = new EnvelopeWriter({ redis, prefix: p.prefix, resultTtlMs: 60_000, maxQueueDepth: 1_000_000, gatewayChannel: `${p.prefix}:gateway:metrics-test` });
    const ids: string[] = [];
    const add = () => {
      const job: EnvelopeJob = { id: newJobId(queueTag('cubic', '1')), tenant: 'tenant-a', created_at: Date.now(), shapes: [[1024]] };
      ids.push(job.id);
      return writer.add(model, job, [decodeInput(new Array(1024).fill(0), model.inputs[0]!)]);
    };
    await Promise.all([add(), add()]);
    await Promise.all([add(), add(), add(), add()]);

    await p.startWorker();
    const ended: Job[] = await Promise.all(ids.map((id) => pollJob(p, id, 40_000)));
    for (const j of ended) expect(j.status, JSON.stringify(j.error)).to.equal('succeeded');

    // One entry per micro-batch (its jobs share batch_size and inference_ms).
    const batches = new Map<string, { inferenceMs: number; size: number }>();
    for (const j of ended) batches.set(`${j.metrics!.batch_size}/${j.metrics!.inference_ms}`, { inferenceMs: j.metrics!.inference_ms, size: j.metrics!.batch_size });
    expect([...batches.values()].map((b) => b.size).sort(), 'a batch of 4 and one of 2').to.deep.equal([2, 4]);
    const start = Math.min(...ended.map((j) => Date.parse(j.started_at!)));
    const end = Math.max(...ended.map((j) => Date.parse(j.completed_at!)));
    const wall = end - start;
    const ortTotal = [...batches.values()].reduce((sum, b) => sum + b.inferenceMs, 0);
    // The two runs, one after the other on one thread: their own times add up to at most the wall time. A run
    // that reported the wait behind the other as its own would pass it by that other's whole run. (Which of the
    // two took longer is not asserted: the first run of a session pays its warm-up, and either may run first.)
    expect(ortTotal, `inference_ms per batch ${JSON.stringify([...batches.values()])}, wall time from the take to the last end ${wall} ms`).to.be.at.most(wall + 25);
    for (const b of batches.values()) expect(b.inferenceMs, `batch of ${b.size}`).to.be.greaterThan(0);
  });
});
