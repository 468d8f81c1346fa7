import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Job } from '@infer/contract';
import { EnvelopeQueue, JobStore } from '@infer/job-store';
import { expectProblem, getJob, postJob } from './helpers/jobs.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { elapse } from './helpers/wait.js';

const features = new Array(64).fill(0.25);
const body = JSON.stringify({ model: 'mlp', version: 1, input: { features } });

/**
 * The job API over time and under races: an Idempotency-Key outliving its
 * job's record; a cancel that races a worker's take; metadata that JSON can
 * parse but not print back.
 */
describe('an Idempotency-Key whose job has expired (RESULT_TTL_SECONDS < 24 h)', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    // docs/operations.md: RESULT_TTL_SECONDS "is the lever" for memory; any positive value is valid.
    p = await startPlatform({ env: { RESULT_TTL_SECONDS: '1' } });
  });
  after(async () => {
    await p.close();
  });

  it('is taken over by the next request with it, which runs as a new job; the one after replays that job', async () => {
    const post = () => p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': 'expires', prefer: 'wait=10' } });
    const first = await post();
    expect(first.status).to.equal(200);
    const job = (await first.json()) as Job;
    expect(job.status).to.equal('succeeded');
    await elapse(1500, 'RESULT_TTL_SECONDS=1 runs out: the job record expires');
    expect((await p.api(`/v1/jobs/${job.id}`)).status, 'the job has expired (404 after RESULT_TTL_SECONDS)').to.equal(404);

    // Not a 409 "still being processed; retry" (for 24 h, by any retry): the key's job is gone, so this request takes it over.
    const again = await post();
    const second = (await again.json()) as Job;
    expect(again.status, JSON.stringify(second)).to.equal(200);
    expect(again.headers.get('idempotent-replayed')).to.equal(null);
    expect(second.id).to.not.equal(job.id);
    expect(second.status).to.equal('succeeded');
    const replay = await post();
    expect(replay.headers.get('idempotent-replayed')).to.equal('true');
    expect(((await replay.json()) as Job).id).to.equal(second.id);
  });
});

describe('cancel racing a worker\'s take', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let redis: Redis;
  const original = JobStore.prototype.cancel;
  before(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    JobStore.prototype.cancel = original;
    redis.disconnect();
    await p.close();
  });

  it('a job a worker took before the cancel committed is canceled as running (started_at kept), not as never started', async () => {
    const { job } = await postJob(p, JSON.parse(body));
    expect(job.status).to.equal('queued');
    const queue = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '1', resultTtlMs: 60_000 });
    let running: Job | undefined;
    // Between the gateway's read of the job (queued) and its cancel's commit, a worker takes the envelope,
    // exactly as the real take script does: the job is running (GET says so, job.started is sent).
    JobStore.prototype.cancel = async function (this: JobStore, ...args: Parameters<JobStore['cancel']>) {
      JobStore.prototype.cancel = original;
      const taken = await queue.fetch('racing-worker', 30_000, 64, 64);
      expect(taken).to.not.equal('paused');
      running = await getJob(p, job.id);
      return original.apply(this, args);
    };
    const res = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(res.status).to.equal(200);
    const canceled = (await res.json()) as Job;
    expect(running?.status).to.equal('running');
    expect(running?.started_at).to.be.a('string');
    // The record was first built from the read (queued); its commit found the job taken, so it was built again, as running.
    expect(canceled.status).to.equal('canceled');
    expect(canceled.started_at, `running showed started_at ${running?.started_at}`).to.equal(running?.started_at);
  });
});

describe('metadata echoed back unchanged', function () {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  it('refuses a number too large for a double (1e400: valid JSON, which would come back as null) with 422', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: `{"model":"mlp","version":1,"input":{"features":${JSON.stringify(features)}},"metadata":{"a":{"x":1e400}}}` });
    const problem = await expectProblem(res, 422, 'invalid_input');
    expect(problem.detail).to.include('metadata.x');
    // A large finite one is fine, and comes back as sent.
    const ok = await p.api('/v1/jobs', { method: 'POST', body: `{"model":"mlp","version":1,"input":{"features":${JSON.stringify(features)}},"metadata":{"x":1e300}}` });
    expect(ok.status).to.equal(202);
    expect(((await ok.json()) as Job).metadata).to.deep.equal({ x: 1e300 });
  });
});
