import { expect } from 'chai';
import { Redis } from 'ioredis';
import { isEnded, newJobId, queueTag, type EnvelopeJob, type Job } from '@infer/contract';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { getJob, pollJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A job reads `running` until its batch has run and never long after the
 * completed_at it ends with: the API must not say "running" at a time it
 * later says the job had ended (and a Prefer: wait on it must not wait on).
 * Two ways that broke, each with two micro-batches taken together (the
 * worker keeps two in flight; onnxruntime-node starts a run from a
 * setImmediate and holds the event loop for the whole of it):
 *
 * - An envelope that did not fit the room a batch had left was split across
 *   two batches, and an envelope ends when all of its jobs have run (one
 *   FINISH for it): the jobs of its first part waited for the second batch.
 *   It now goes whole into the next batch.
 * - A batch's FINISH was auto-pipelined (sent from a setImmediate) and so
 *   queued behind the next batch's run: it is written at once now.
 *
 * The cubic model (max_batch_size 4) runs long inputs for about a second; the
 * worker runs in a process of its own, so the test's reads are answered
 * while a run holds the worker's event loop.
 */
describe('envelopes: a batch’s jobs end when it has run, not when the next one has', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let worker: Spawned | undefined;

  before(() => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(), config: { max_batch_size: 4, max_delay_ms: 2 } } });
  });
  beforeEach(async () => {
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
  });
  afterEach(async () => {
    worker?.kill();
    await worker?.exited;
    worker = undefined;
    redis?.disconnect();
    await p?.close();
  });
  after(() => repo?.remove());

  /** Two envelopes of cubic jobs (inputs of these lengths), written as a gateway writes them, then a worker: its first take gets both. */
  async function queueThenWork(first: number[], second: number[]): Promise<{ first: string[]; second: string[] }> {
    const model = p.gateway.models.resolve('cubic', '1');
    const writer = new EnvelopeWriter({ redis, prefix: p.prefix, resultTtlMs: 60_000, maxQueueDepth: 1_000_000, gatewayChannel: `${p.prefix}:gateway:test` });
    // Jobs added in one turn travel as one envelope.
    const envelope = async (lengths: number[]) => {
      const jobs = lengths.map((len) => {
        const job: EnvelopeJob = { id: newJobId(queueTag('cubic', '1')), tenant: 'tenant-a', created_at: Date.now(), shapes: [[len]] };
        return { id: job.id, written: writer.add(model, job, [decodeInput(new Array(len).fill(0), model.inputs[0]!)]) };
      });
      await Promise.all(jobs.map((j) => j.written));
      return jobs.map((j) => j.id);
    };
    const ids = { first: await envelope(first), second: await envelope(second) };
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    await worker.waitForLog('worker started', 60_000);
    return ids;
  }

  /** Read a job until it ends; the ended job and when the last read that found it running was sent. */
  async function watch(id: string): Promise<{ ended: Job; lastRunningSentAt: number }> {
    let lastRunningSentAt = 0;
    const ended = await waitUntil(
      async () => {
        const sentAt = Date.now();
        const job = await getJob(p, id);
        if (isEnded(job.status)) return job;
        if (job.status === 'running') lastRunningSentAt = sentAt;
        return null;
      },
      60_000,
      `job ${id} to end`,
    );
    expect(ended.status, JSON.stringify(ended.error)).to.equal('succeeded');
    return { ended, lastRunningSentAt };
  }

  /** Its last read as running came a FINISH after its completed_at (milliseconds), not a long run (seconds) later. */
  function expectNoRunningAfterEnd(watched: { ended: Job; lastRunningSentAt: number }, long: Job): void {
    const { ended, lastRunningSentAt } = watched;
    const slack = Math.max(100, Math.min(300, long.metrics!.inference_ms / 3));
    expect(
      lastRunningSentAt - Date.parse(ended.completed_at!),
      `job ${ended.id} completed at ${ended.completed_at}, still read running at ${new Date(lastRunningSentAt).toISOString()}; ` +
        `the long run took ${Math.round(long.metrics!.inference_ms)} ms and ended at ${long.completed_at}`,
    ).to.be.below(slack);
  }

  it('an envelope that does not fit the room left goes whole into the next batch, its jobs ending together', async () => {
    // Envelope 1: 3 short jobs; envelope 2: a short one, then two long ones, which do not fit the 1 left.
    const ids = await queueThenWork([16, 16, 16], [16, 2048, 2048]);
    const watched = await watch(ids.second[0]!);
    const long: Job[] = await Promise.all(ids.second.slice(1).map((id) => pollJob(p, id, 60_000)));
    // Whole in batch 2, not split into batch 1: a run of its own shape (1), then the long ones' (2).
    expect(watched.ended.metrics!.batch_size, 'the short job of envelope 2 ran in batch 2, in a run of its own shape').to.equal(1);
    expect(long.map((j) => j.metrics!.batch_size), 'the long jobs ran in the batch of 2').to.deep.equal([2, 2]);
    expect(watched.ended.completed_at).to.equal(long[0]!.completed_at);
    expectNoRunningAfterEnd(watched, long[0]!);
  });

  it('the jobs of the first batch read ended before the second batch has run', async () => {
    // Envelope 2 (4 long jobs) fills a batch of its own, due at once: in flight, its run next, while batch 1 runs.
    const ids = await queueThenWork([16, 16, 16], [1024, 1024, 1024, 1024]);
    const watched = await watch(ids.first[0]!);
    const long: Job[] = await Promise.all(ids.second.map((id) => pollJob(p, id, 60_000)));
    expect(watched.ended.metrics!.batch_size, 'envelope 1 ran alone in batch 1').to.equal(3);
    expect(long.map((j) => j.metrics!.batch_size), 'the long jobs ran in one batch of 4').to.deep.equal([4, 4, 4, 4]);
    expectNoRunningAfterEnd(watched, long[0]!);
  });
});
