import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { interactiveKeys, interactiveQueue, jobKeys, type EnvelopeJob, type Job } from '@infer/contract';
import { EnvelopeQueue, encodeRecord } from '@infer/job-store';
import { expectProblem, expectRetryAfter, getJob, pollJob } from './helpers/jobs.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { elapse, waitUntil } from './helpers/wait.js';
import { cancelAfterMs } from '../apps/gateway/src/http/cancel-after.js';

/**
 * `Cancel-After` deadlines (a job still queued at its deadline ends
 * canceled, `deadline_exceeded`, and never runs; a running one finishes) and
 * TENANT_MAX_QUEUED (one tenant's flood cannot fill the queue for everyone).
 */

const body = (version = '2') => JSON.stringify({ model: 'mlp', version, input: { features: new Array(64).fill(0.5) } });

async function submit(p: TestPlatform, headers: Record<string, string> = {}, key = TEST_KEY, version = '2'): Promise<Response> {
  return p.api('/v1/jobs', { method: 'POST', body: body(version), headers, key });
}

describe('Cancel-After deadlines', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let redis: Redis;
  beforeEach(async () => {
    redis = new Redis(TEST_REDIS_URL);
  });
  afterEach(async () => {
    redis.disconnect();
    await p?.close();
  });

  it('ends a job still queued at its deadline as canceled (deadline_exceeded), answering a waiting request then; it never runs', async () => {
    p = await startPlatform();
    // The queue is paused (from the dashboard, say): a worker is alive, but takes nothing.
    const ref = interactiveQueue(p.prefix, 'mlp', '2');
    const queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
    try {
      await queue.pause();
      const t0 = Date.now();
      const res = await submit(p, { 'cancel-after': '1s', prefer: 'wait=10' });
      const job = (await res.json()) as Job;
      expect(res.status).to.equal(200);
      expect(job.status).to.equal('canceled');
      expect(job.error).to.deep.equal({ code: 'deadline_exceeded', message: 'The job was still queued at its Cancel-After deadline; it never ran.' });
      expect(job.started_at).to.equal(null);
      expect(Date.now() - t0).to.be.within(900, 4000);
      await queue.resume();
      // Taken once the queue resumes, and skipped: it stays canceled, and nothing ran.
      await waitUntil(async () => (await redis.llen(interactiveKeys(p.prefix, 'mlp', '2').wait)) === 0, 5000, 'the envelope to be taken');
      expect((await getJob(p, job.id)).status).to.equal('canceled');
      const ended = await p.worker!.metrics.registry.getSingleMetricAsString('infer_jobs_ended_total');
      // The series is there from the start, at 0: it stays 0.
      expect(ended).to.not.match(/status="succeeded"\} [1-9]/);
      expect(ended).to.match(/model="mlp",version="2",status="succeeded"\} 0/);
    } finally {
      await queue.close();
    }
  });

  it('a job taken after its deadline (the workers were down) ends canceled without running', async () => {
    p = await startPlatform({ worker: false });
    const res = await submit(p, { 'cancel-after': '200ms' });
    expect(res.status).to.equal(202);
    const job = (await res.json()) as Job;
    await elapse(Date.parse(job.created_at) + 300 - Date.now(), 'the Cancel-After deadline passing while no worker is up');
    await p.startWorker();
    // Ended by the worker (its take or its sweep), not by a read here: nothing reads it until its record is there.
    await waitUntil(async () => (await redis.exists(jobKeys(p.prefix, job.id).record)) === 1, 10_000, 'the worker to end the job');
    const ended = await pollJob(p, job.id);
    expect(ended.status).to.equal('canceled');
    expect(ended.error!.code).to.equal('deadline_exceeded');
    expect(ended.metrics).to.equal(null);
  });

  it('with no worker at all, a job past its deadline reads canceled, and requests waiting on it are answered at the deadline (gateways end it)', async () => {
    p = await startPlatform({ worker: false });
    const t0 = Date.now();
    const waited = await submit(p, { 'cancel-after': '300ms', prefer: 'wait=10' });
    const w = (await waited.json()) as Job;
    expect({ http: waited.status, status: w.status, code: w.error?.code }).to.deep.equal({ http: 200, status: 'canceled', code: 'deadline_exceeded' });
    expect(Date.now() - t0, 'answered at the deadline, not at the end of the wait').to.be.below(5000);

    const plain = (await (await submit(p, { 'cancel-after': '200ms' })).json()) as Job;
    const polled = await p.api(`/v1/jobs/${plain.id}`, { headers: { prefer: 'wait=10' } });
    const j = (await polled.json()) as Job;
    expect({ http: polled.status, status: j.status, code: j.error?.code, started: j.started_at }).to.deep.equal({ http: 200, status: 'canceled', code: 'deadline_exceeded', started: null });

    const later = (await (await submit(p, { 'cancel-after': '100ms' })).json()) as Job;
    const read = await waitUntil(async () => {
      const job = await getJob(p, later.id);
      return job.status !== 'queued' ? job : undefined;
    }, 5000, 'a read past the deadline to say canceled');
    expect({ status: read.status, code: read.error?.code }).to.deep.equal({ status: 'canceled', code: 'deadline_exceeded' });
    // Nothing left counted as queued.
    expect(Number((await redis.get(interactiveKeys(p.prefix, 'mlp', '2').queued)) ?? 0)).to.equal(0);
  });

  it('a job running at its deadline finishes', async () => {
    p = await startPlatform({ worker: false });
    const res = await submit(p, { 'cancel-after': '300ms' });
    const job = (await res.json()) as Job;
    // A worker takes it (the real take script) and is still running it when the deadline passes.
    const worker = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: 60_000 });
    const taken = await worker.fetch('slow-worker', 30_000, 64, 64);
    if (taken === 'paused' || taken.envelopes.length !== 1) throw new Error('expected one envelope');
    await elapse(Date.parse(job.created_at) + 400 - Date.now(), 'the Cancel-After deadline passing while the job runs');
    // A live worker's deadline sweep sees it running and leaves it be.
    await p.startWorker();
    const deadlines = interactiveKeys(p.prefix, 'mlp', '2').deadlines;
    await waitUntil(async () => (await redis.zcard(deadlines)) === 0, 5000, 'a deadline sweep');
    expect((await getJob(p, job.id)).status).to.equal('running');
    const envelope = taken.envelopes[0]!;
    const data = JSON.parse(envelope.fields.get('data')!.toString()) as { gateway: string; jobs: EnvelopeJob[] };
    const record = encodeRecord('mlp', '2', data.jobs[0]!, {
      status: 'succeeded',
      startedAt: Date.now(),
      completedAt: Date.now(),
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [4], bytes: Buffer.from(new Float32Array([0.25, 0.25, 0.25, 0.25]).buffer) }],
    });
    expect(await worker.finish([{ id: envelope.id, gateway: data.gateway, jobs: [{ id: job.id, record, wait: false, deadline: true }] }])).to.deep.equal([true]);
    expect((await getJob(p, job.id)).status).to.equal('succeeded');
  });

  it('a job taken before its deadline by a worker that died runs again after it, and finishes', async () => {
    p = await startPlatform({ worker: false, env: { WORKER_LOCK_MS: '1000' } });
    const res = await submit(p, { 'cancel-after': '1s' });
    const job = (await res.json()) as Job;
    // A worker takes it in time (the real take script), then dies: its 1 s lock is never renewed.
    const dead = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: 60_000 });
    const taken = await dead.fetch('dead-worker', 1000, 64, 64);
    if (taken === 'paused' || taken.envelopes.length !== 1) throw new Error('expected one envelope');
    expect(Date.now()).to.be.below(Date.parse(job.created_at) + 1000);
    expect((await getJob(p, job.id)).status).to.equal('running');
    await elapse(Date.parse(job.created_at) + 1200 - Date.now(), 'the deadline passing while the job is held by a dead worker');
    // A live worker's stalled check puts the envelope back, and the worker takes it again, after the deadline:
    // the job had started before it (the first take is what counts), so it runs rather than ending deadline_exceeded.
    await p.startWorker();
    const ended = await pollJob(p, job.id, 15_000);
    expect(ended.error, 'a job a worker had taken before its deadline must finish').to.equal(null);
    expect(ended.status).to.equal('succeeded');
  });

  it('reads a Cancel-After in whole milliseconds, rounded up: a fraction of one is a deadline still ahead', () => {
    expect(cancelAfterMs('0.4ms')).to.equal(1);
    expect(cancelAfterMs('1.5s')).to.equal(1500);
    expect(cancelAfterMs('1h30m')).to.equal(5_400_000);
    expect(cancelAfterMs(undefined)).to.equal(undefined);
  });

  it('refuses a malformed or too long Cancel-After with 400, enqueueing nothing', async () => {
    p = await startPlatform({ worker: false });
    for (const value of ['soon', '10', '-5s', '25h', '1d', '0s', '1h 30m']) {
      const res = await submit(p, { 'cancel-after': value });
      await expectProblem(res, 400, 'invalid_input');
    }
    expect(await redis.hlen(interactiveKeys(p.prefix, 'mlp', '2').index)).to.equal(0);
    expect((await submit(p, { 'cancel-after': '1h30m' })).status).to.equal(202);
  });
});

describe('TENANT_MAX_QUEUED', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    redis = new Redis(TEST_REDIS_URL);
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: '5' } });
  });
  after(async () => {
    redis.disconnect();
    await p?.close();
  });

  it('holds one tenant to its cap across queues with 429 quota_exceeded, leaves other tenants alone, and frees room as jobs are taken or canceled', async () => {
    const a = await Promise.all(Array.from({ length: 3 }, () => submit(p, {}, TEST_KEY, '1')));
    expect(a.map((r) => r.status)).to.deep.equal([202, 202, 202]);
    const more = await Promise.all(Array.from({ length: 5 }, () => submit(p, {}, TEST_KEY, '2')));
    const statuses = more.map((r) => r.status).sort();
    expect(statuses).to.deep.equal([202, 202, 429, 429, 429]);
    const refused = more.find((r) => r.status === 429)!;
    expectRetryAfter(refused);
    await expectProblem(refused, 429, 'quota_exceeded');
    // Another tenant is not held back by the first one's flood.
    const other = await Promise.all(Array.from({ length: 5 }, () => submit(p, {}, OTHER_TENANT_KEY, '2')));
    expect(other.map((r) => r.status)).to.deep.equal([202, 202, 202, 202, 202]);
    // A cancel frees one place.
    const first = (await a[0]!.json()) as Job;
    expect((await p.api(`/v1/jobs/${first.id}/cancel`, { method: 'POST' })).status).to.equal(200);
    expect((await submit(p, {}, TEST_KEY, '2')).status).to.equal(202);
    expect((await submit(p, {}, TEST_KEY, '2')).status).to.equal(429);
    // Workers taking the jobs free the rest.
    await p.startWorker();
    const tenants = interactiveKeys(p.prefix, 'mlp', '2').tenants;
    await waitUntil(async () => Number((await redis.hget(tenants, 'tenant-a')) ?? 0) === 0, 10_000, 'the queued jobs to be taken');
    await waitUntil(async () => (await submit(p, {}, TEST_KEY, '2')).status === 202, 5000, 'room for tenant-a again');
  });
});
