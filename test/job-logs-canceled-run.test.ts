import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README, Logs: "A worker writes one `info` line per job it runs:
 * {"msg":"job ended","jobId":…,"model":…,"version":…,"status":…,…}".
 * docs/api.md: cancel of a running job: "a running job's output is
 * discarded", and the job is `canceled`. The worker's metrics already treat
 * such a run as no end of the job (metrics-latency-once.test.ts); its log
 * line must not tell an operator grepping for failures or successes that the
 * job succeeded.
 */
describe('logs: the "job ended" line of a job canceled while it ran', function () {
  this.timeout(90_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let worker: Spawned | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(), config: { max_batch_size: 4, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    worker?.kill();
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('says the run was discarded, not that the job succeeded', async () => {
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    await worker.waitForLog('worker started', 60_000);
    await p.gateway.catalog.refresh();
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
    const lines = worker.lines.filter((l) => l.msg === 'job ended' && l.jobId === job.id);
    expect(lines.map((l) => l.status), `the "job ended" lines of job ${job.id}, which ended canceled`).to.deep.equal(['discarded']);
  });
});
