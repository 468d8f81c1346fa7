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
 * A micro-batch's end (its FINISH: records written, waiting gateways told)
 * leaves the worker as soon as its run ends, even when the next batch is
 * ready to run: the worker keeps two batches in flight, and onnxruntime-node
 * starts a run from a setImmediate and holds the event loop for the whole of
 * it. FINISH is written at once, not auto-pipelined (an auto-pipeline leaves
 * on a setImmediate too, and one queued behind the next run's would wait for
 * all of it): the first batch's jobs must not read `running` (nor their
 * Prefer: wait requests wait) through the next batch's run.
 *
 * Here: envelope 1 (3 short jobs) runs in batch 1, envelope 2 (4 long
 * jobs: a run of about a second) in batch 2. Envelope 1 must read ended
 * once batch 1 has run, not once batch 2 has.
 */
describe('envelopes: a batch’s end does not wait for the next batch’s run', function () {
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

  it('the jobs of the first batch read ended before the second batch has run', async () => {
    const model = p.gateway.models.resolve('cubic', '1');
    const writer = new EnvelopeWriter({ redis, prefix: p.prefix, resultTtlMs: 60_000, maxQueueDepth: 1_000_000, gatewayChannel: `${p.prefix}:gateway:review` });
    const add = (len: number) => {
      const job: EnvelopeJob = { id: newJobId(queueTag('cubic', '1')), tenant: 'tenant-a', created_at: Date.now(), shapes: [[len]] };
      return { id: job.id, written: writer.add(model, job, [decodeInput(new Array(len).fill(0), model.inputs[0]!)]) };
    };
    // Two envelopes (two turns), queued before the worker starts: its first take gets both (room 4: 3, then 4).
    // Envelope 2 fills a batch of its own, due at once: batch 2 is in flight, its run next, while batch 1 runs.
    const first = [add(16), add(16), add(16)];
    await Promise.all(first.map((j) => j.written));
    const second = [add(1024), add(1024), add(1024), add(1024)];
    await Promise.all(second.map((j) => j.written));
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    await worker.waitForLog('worker started', 60_000);

    // Watch a job of envelope 1 from outside the worker: when each read was sent, and what it found.
    let lastRunningSentAt = 0;
    const watched = first[0]!.id;
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
    const long: Job[] = await Promise.all(second.map((j) => pollJob(p, j.id, 60_000)));
    expect(ended.status, JSON.stringify(ended.error)).to.equal('succeeded');
    // Envelope 2 does not fit the room envelope 1 leaves: it goes whole into the next batch.
    expect(ended.metrics!.batch_size, 'envelope 1 ran alone in batch 1').to.equal(3);
    expect(long.map((j) => j.metrics!.batch_size), 'the long jobs ran in one batch of 4').to.deep.equal([4, 4, 4, 4]);
    const secondRunMs = long[0]!.metrics!.inference_ms;
    const completedAt = Date.parse(ended.completed_at!);
    // Its end is a FINISH away from its completed_at (milliseconds), not a whole other run (seconds).
    const slack = Math.max(100, Math.min(300, secondRunMs / 3));
    expect(
      lastRunningSentAt - completedAt,
      `job ${watched} completed at ${ended.completed_at} (batch 1), still read running at ${new Date(lastRunningSentAt).toISOString()}; ` +
        `batch 2 ran ${Math.round(secondRunMs)} ms and ended at ${long[0]!.completed_at}`,
    ).to.be.below(slack);
  });
});
