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
 * An envelope that does not fit the room a micro-batch has left goes whole
 * into the next batch, not split across the two: an envelope ends when all
 * of its jobs have run (one FINISH for it), so a job in a first part would
 * read `running` (and a Prefer: wait on it wait) through the whole of the
 * second batch, then end with the completed_at of the first: the API would
 * say "running" at a time it later says the job had ended.
 *
 * Here: envelope 1 (3 short jobs) and envelope 2 (one short job, then two
 * long ones), taken together for a max_batch_size of 4. Batch 1: envelope
 * 1; batch 2: envelope 2 whole (its short job in a run of its own shape,
 * then the two long ones: seconds). The worker runs in a process of its own
 * (ONNX Runtime holds a worker's event loop during a run; the test's reads
 * are answered meanwhile).
 */
describe('envelopes: one that does not fit the room left goes whole into the next batch', function () {
  this.timeout(120_000);
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
    await worker?.exited;
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('never reads running well after the completed_at it ends with', async () => {
    const model = p.gateway.models.resolve('cubic', '1');
    const writer = new EnvelopeWriter({ redis, prefix: p.prefix, resultTtlMs: 60_000, maxQueueDepth: 1_000_000, gatewayChannel: `${p.prefix}:gateway:review` });
    const add = (len: number) => {
      const job: EnvelopeJob = { id: newJobId(queueTag('cubic', '1')), tenant: 'tenant-a', created_at: Date.now(), shapes: [[len]] };
      return { id: job.id, written: writer.add(model, job, [decodeInput(new Array(len).fill(0), model.inputs[0]!)]) };
    };
    // Two envelopes (two turns), queued before the worker starts: its first take gets both (room 4: 3, then 3).
    // Envelope 2 does not fit the 1 left in batch 1.
    const first = [add(16), add(16), add(16)];
    await Promise.all(first.map((j) => j.written));
    const second = [add(16), add(2048), add(2048)];
    await Promise.all(second.map((j) => j.written));
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    await worker.waitForLog('worker started', 60_000);

    // Watch envelope 2's short job from outside the worker: when each read was sent, and what it found.
    let lastRunningSentAt = 0;
    const watched = second[0]!.id;
    const ended = await waitUntil(
      async () => {
        const sentAt = Date.now();
        const job = await getJob(p, watched);
        if (isEnded(job.status)) return job;
        if (job.status === 'running') lastRunningSentAt = sentAt;
        return null;
      },
      60_000,
      `job ${watched} to end`,
    );
    const long: Job[] = await Promise.all(second.slice(1).map((j) => pollJob(p, j.id, 60_000)));
    expect(ended.status, JSON.stringify(ended.error)).to.equal('succeeded');
    // Whole in batch 2, not split into batch 1: a run of its own shape (1), then the long ones' (2).
    expect(ended.metrics!.batch_size, 'the short job of envelope 2 ran in batch 2, in a run of its own shape').to.equal(1);
    expect(Date.parse(ended.completed_at!)).to.be.at.least(Date.parse(long[0]!.completed_at!));
    expect(long.map((j) => j.metrics!.batch_size), 'the long jobs ran in the batch of 2').to.deep.equal([2, 2]);
    const secondRunMs = long[0]!.metrics!.inference_ms;
    const completedAt = Date.parse(ended.completed_at!);
    // Ending is a FINISH away from completed_at (milliseconds), never a batch's whole run (seconds).
    const slack = Math.max(100, Math.min(300, secondRunMs / 3));
    expect(
      lastRunningSentAt - completedAt,
      `job ${watched} completed at ${ended.completed_at}, still read running at ${new Date(lastRunningSentAt).toISOString()}; ` +
        `batch 2 ran ${Math.round(secondRunMs)} ms and ended at ${long[0]!.completed_at}`,
    ).to.be.below(slack);
  });
});
