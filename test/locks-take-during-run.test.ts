import { expect } from 'chai';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { getJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * An idle consumer keeps a blocking take in flight while a run holds the event loop: an envelope enqueued
 * meanwhile is taken, and locked for WORKER_LOCK_MS, by Redis, while the main thread cannot read the reply.
 * The lock-renewal thread renews such jobs by the take's token (LockKeeper.taking), so another worker's
 * stalled check does not take the envelope back while its worker is alive and about to run it.
 */
describe('workers: an envelope taken by a blocking take during a long model run', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let worker: Spawned | undefined;
  let checker: Worker | undefined;
  let connection: Redis | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(24), config: { max_batch_size: 1, max_delay_ms: 0 } } });
    p = await startPlatform({ models: repo.root, worker: false });
  });
  after(async () => {
    worker?.kill();
    await checker?.close(true);
    connection?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('keeps it locked: no stalled check takes it back while its worker runs the job before it', async () => {
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0', WORKER_LOCK_MS: '1000' });
    await worker.waitForLog('worker started', 60_000);
    await p.gateway.catalog.refresh();
    // Another worker of the same version, busy elsewhere: only its stalled check runs (as QueueConsumer runs it).
    const keys = interactiveKeys(p.prefix, 'cubic', '1');
    const q = keys.ref;
    connection = new Redis(p.config.redisUrl, { maxRetriesPerRequest: null });
    checker = new Worker(q.name, null, { connection, prefix: q.prefix, autorun: false, lockDuration: 1000, stalledInterval: 1000, maxStalledCount: 2 });
    const stalled: string[] = [];
    checker.on('stalled', (id) => stalled.push(id));
    checker.on('error', () => undefined);
    void checker.startStalledCheckTimer();

    // A run of seconds (cubic in len), far past the 1 s lock.
    const long = await postJob(p, { model: 'cubic', input: { x: new Array(3200).fill(0) } });
    await waitUntil(async () => (await getJob(p, long.job.id)).status !== 'queued', 30_000, 'the long job to start');
    const short = await postJob(p, { model: 'cubic', input: { x: new Array(8).fill(0) } });
    // The envelope each job is in (the index keeps it while the job has not ended).
    const envelopeOf = async (id: string) => String(await connection!.hget(keys.index, id)).split(':').at(-1);
    const shortEnvelope = await envelopeOf(short.job.id);
    const longEnvelope = await envelopeOf(long.job.id);
    const ended = async (id: string) => {
      const j = await getJob(p, id);
      return j.status === 'succeeded' || j.status === 'failed' ? j : null;
    };
    const first: Job = await waitUntil(() => ended(long.job.id), 90_000, 'the long job to end');
    const second: Job = await waitUntil(() => ended(short.job.id), 30_000, 'the short job to end');
    expect(first.metrics?.inference_ms, 'the run was longer than the lock').to.be.greaterThan(3000);
    expect(first.status).to.equal('succeeded');
    expect(second.status).to.equal('succeeded');
    const said = worker.lines.filter((l) => typeof l.msg === 'string' && (l.msg.includes('stalled') || l.msg.includes('lost the lock')));
    const named = stalled.map((id) => (id === shortEnvelope ? 'the short job (taken during the run)' : id === longEnvelope ? 'the long job (running)' : id));
    expect({ stalledChecks: named, workerSaid: said.map((l) => l.msg) }, 'an envelope taken while its worker ran was taken back').to.deep.equal({ stalledChecks: [], workerSaid: [] });
  });
});
