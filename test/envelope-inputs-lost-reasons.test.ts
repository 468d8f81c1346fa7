import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, interactiveQueue, jobKeys, type Job } from '@infer/contract';
import { EnvelopeQueue } from '@infer/job-store';
import { pollJob } from './helpers/jobs.js';
import { startStalledCheck } from './helpers/stalled-check.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { elapse, waitUntil } from './helpers/wait.js';

/**
 * An envelope whose inputs key (`<envelope>:in`, inputs of 16 KiB or more)
 * is gone fails its jobs `invalid_input`, but not before what the contract
 * says ends those jobs first: a Cancel-After deadline passed before the
 * first take (docs/api.md: "A job still queued at its deadline ends
 * `canceled` with `error.code` `deadline_exceeded` and never runs"), or an
 * envelope that has stalled more than maxStalledCount times
 * (docs/architecture.md: "has its jobs failed with `worker_lost` instead of
 * running again"). Neither needs the inputs: the deadline sweep ends the
 * same job canceled without reading them, so the status must not depend on
 * whether the sweep or the take gets there first.
 */

// ocr-cls (test/fixtures/served): one FP32 [3, 48, 192] input, 110,592 bytes: over the 16 KiB threshold.
const image = Buffer.from(new Float32Array(3 * 48 * 192).fill(0.5).buffer).toString('base64');
const body = JSON.stringify({ model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: image } } });

describe('a lost inputs key does not hide why a job ends', function () {
  this.timeout(40_000);
  let p: TestPlatform | undefined;
  let redis: Redis;
  beforeEach(() => {
    redis = new Redis(TEST_REDIS_URL);
  });
  afterEach(async () => {
    redis.disconnect();
    await p?.close();
    p = undefined;
  });

  async function submit(platform: TestPlatform, headers: Record<string, string> = {}): Promise<Job> {
    const res = await platform.api('/v1/jobs', { method: 'POST', body, headers });
    expect(res.status).to.equal(202);
    return (await res.json()) as Job;
  }

  /** The one envelope waiting in ocr-cls v1's queue; its inputs key deleted (lost). */
  async function loseInputs(platform: TestPlatform): Promise<string> {
    const k = interactiveKeys(platform.prefix, 'ocr-cls', '1');
    const [id] = await redis.lrange(k.wait, 0, -1);
    expect(id, 'one envelope queued').to.be.a('string');
    expect(await redis.hget(k.base + id!, 'ix'), 'its inputs are in a key of their own').to.equal('1');
    expect(await redis.del(k.inputs(id!))).to.equal(1);
    return id!;
  }

  it('a job taken after its Cancel-After deadline, its inputs key gone, still ends canceled with deadline_exceeded', async () => {
    p = await startPlatform({ worker: false });
    const job = await submit(p, { 'cancel-after': '200ms' });
    await loseInputs(p);
    await elapse(Date.parse(job.created_at) + 300 - Date.now(), 'the Cancel-After deadline passing while no worker is up');
    await p.startWorker();
    // Ended by the worker (its take, which comes before its first deadline sweep), not by a gateway read.
    await waitUntil(async () => (await redis.exists(jobKeys(p!.prefix, job.id).record)) === 1, 10_000, 'the worker to end the job');
    const ended = await pollJob(p, job.id);
    expect({ status: ended.status, code: ended.error?.code }).to.deep.equal({ status: 'canceled', code: 'deadline_exceeded' });
  });

  it('an envelope that stalled more than maxStalledCount times, its inputs key gone, fails its jobs worker_lost', async () => {
    p = await startPlatform({ worker: false });
    const job = await submit(p);
    const k = interactiveKeys(p.prefix, 'ocr-cls', '1');
    const ref = interactiveQueue(p.prefix, 'ocr-cls', '1');
    // Workers that take the envelope and die in its run (their 300 ms locks lapse), three times; BullMQ's
    // stalled check (run here as every worker runs it, maxStalledCount 2) puts it back each time, the third
    // time marked `defa`. After the first, a worker runs its jobs alone and notes each run (MARK_RUNNING).
    const dying = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'ocr-cls', version: '1', resultTtlMs: 60_000 });
    const [envelope] = await redis.lrange(k.wait, 0, -1);
    const checker = startStalledCheck(TEST_REDIS_URL, ref);
    try {
      for (let stall = 1; stall <= 3; stall++) {
        const taken = await dying.fetch(`dead-worker-${stall}`, 300, 64, 64);
        expect(taken === 'paused' ? 0 : taken.envelopes.length).to.equal(1);
        const held = (taken as Exclude<typeof taken, 'paused'>).envelopes[0]!;
        if (held.ownStalls > 0) await dying.markRunning(held.id, `dead-worker-${stall}`, job.id, held.take);
        await waitUntil(async () => Number(await redis.hget(k.base + envelope!, 'stc')) === stall && (await redis.llen(k.wait)) === 1, 10_000, `stall ${stall}`);
      }
      expect(await redis.hget(k.base + envelope!, 'defa'), 'marked as a deferred failure').to.be.a('string');
    } finally {
      await checker.close();
    }
    await loseInputs(p);
    await p.startWorker();
    const ended = await pollJob(p, job.id, 15_000);
    expect({ status: ended.status, code: ended.error?.code }).to.deep.equal({ status: 'failed', code: 'worker_lost' });
  });
});
