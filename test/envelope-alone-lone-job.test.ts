import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, newJobId, queueTag, type EnvelopeJob, type Job } from '@infer/contract';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { pollJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A worker whose only work is an envelope running alone (a stall of its own
 * before: its jobs run one at a time, each with a note before and after)
 * still takes work meanwhile: a lone job that comes is taken, and its batch
 * runs between two of the alone runs, not after the whole envelope. (A
 * blocking take that waited for every run the worker owed held it back.)
 */
describe('own stalls: a lone job beside an envelope running alone', function () {
  this.timeout(120_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let redis: Redis | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(), config: { max_batch_size: 16, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('a lone job posted while an alone envelope runs is taken before that envelope has all run', async () => {
    const k = interactiveKeys(p!.prefix, 'cubic', '1');
    const model = p!.gateway.models.resolve('cubic', '1');
    const writer = new EnvelopeWriter({ redis: redis!, prefix: p!.prefix, resultTtlMs: 60_000, maxQueueDepth: 1_000_000, gatewayChannel: `${p!.prefix}:gateway:test` });
    // One envelope of 16 jobs (written in one turn), each a run of some 20 ms alone.
    const jobs = Array.from({ length: 16 }, () => {
      const job: EnvelopeJob = { id: newJobId(queueTag('cubic', '1')), tenant: 'tenant-a', created_at: Date.now(), shapes: [[288]] };
      return { id: job.id, written: writer.add(model, job, [decodeInput(new Array(288).fill(0), model.inputs[0]!)]) };
    });
    await Promise.all(jobs.map((j) => j.written));
    const [envelope] = await waitUntil(async () => {
      const w = await redis!.lrange(k.wait, 0, -1);
      return w.length === 1 ? w : null;
    }, 10_000, 'the envelope queued');
    // As a take whose run stalled leaves it: the next take counts a stall of its own, and its jobs run alone.
    const at = String(Date.now());
    await redis!.hset(k.base + envelope!, { processedOn: at, ft: at, ats: '1', rt: '1', stc: '1' });

    await p!.startWorker();
    // Its jobs run alone: a job noted running (`run`), and more than one left.
    await waitUntil(async () => ((await redis!.hget(k.base + envelope!, 'run')) ? true : null), 20_000, 'the envelope to run alone');
    const { job: lone } = await postJob(p!, { model: 'cubic', input: { x: new Array(8).fill(0) } });
    const loneEnded = await pollJob(p!, lone.id, 60_000);
    const aloneEnded: Job[] = await Promise.all(jobs.map((j) => pollJob(p!, j.id, 60_000)));
    expect(aloneEnded.every((j) => j.status === 'succeeded')).to.equal(true);
    const lastAlone = Math.max(...aloneEnded.map((j) => Date.parse(j.completed_at!)));
    const firstAlone = Math.min(...aloneEnded.map((j) => Date.parse(j.completed_at!)));
    const loneAt = Date.parse(loneEnded.completed_at!);
    expect(
      loneAt,
      `lone job completed at ${loneEnded.completed_at}; the alone envelope's jobs from ${new Date(firstAlone).toISOString()} to ${new Date(lastAlone).toISOString()} (lone queue_ms ${loneEnded.metrics?.queue_ms})`,
    ).to.be.below(lastAlone);
  });
});
