import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, keys, newJobId, queueTag, type EnvelopeJob, type Job } from '@infer/contract';
import { EnvelopeQueue, encodeRecord, type Ending, type FinishingEnvelope, type TakenEnvelope } from '@infer/job-store';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { decodeInput } from '@infer/tensors';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { mlpReference } from '../scripts/build-models.js';
import { maxAbsDiff } from './helpers/batches.js';
import { flatten, getJob, pollJob, postJob, QueueProbe } from './helpers/jobs.js';
import { seededFloats } from './helpers/ort-reference.js';
import { deletePrefix, SHIPPED_MODELS, startPlatform, TEST_KEY, TEST_REDIS_URL, uniquePrefix, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';
import { startWebhookReceiver, type Delivery, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { eventIdFor, WebhookDeliveryWorker, WebhookEvents } from '@infer/webhooks';
import { JobWebhookEmitter } from '../apps/worker/src/interactive/job-webhooks.js';

/**
 * Envelopes: the jobs one gateway accepts for a model version in the same
 * turn travel as one BullMQ job. These tests hold the envelope to every
 * promise a job makes on its own: its id, status, output, cancel, webhook
 * events, and its place under MAX_QUEUE_DEPTH.
 */

const featuresOf = (seed: number) => Array.from(seededFloats(64, seed));
const body = (seed: number, extra: Record<string, unknown> = {}) => ({ model: 'mlp', version: '2', input: { features: featuresOf(seed) }, ...extra });

type JobEvent = { type: string; data: Job };

/** The `type` events (job.started, job.completed) delivered so far, in the order they came. */
function delivered(hooks: WebhookReceiver<JobEvent>, type: string): Delivery<JobEvent>[] {
  return hooks.deliveries.filter((d) => d.event.type === type);
}

/**
 * What a hand-run "worker" hands EnvelopeQueue.finish for the envelopes it
 * took (mlp version 2): every job ended now as `ending` says, its
 * job.completed put on the outbox when `completedHook`.
 */
function finishEvery(envelopes: readonly TakenEnvelope[], ending: Omit<Ending, 'startedAt' | 'completedAt'>, completedHook = false): FinishingEnvelope[] {
  return envelopes.map((e) => {
    const data = JSON.parse(e.fields.get('data')!.toString()) as { gateway: string; jobs: EnvelopeJob[] };
    return {
      id: e.id,
      gateway: data.gateway,
      jobs: data.jobs.map((job) => ({
        id: job.id,
        wait: false,
        completedHook,
        record: encodeRecord('mlp', '2', job, { ...ending, startedAt: Date.now(), completedAt: Date.now() }),
      })),
    };
  });
}

function expectMlpOutput(job: Job, seed: number): void {
  expect(job.status, JSON.stringify(job.error)).to.equal('succeeded');
  const want = mlpReference(2, Float32Array.from(featuresOf(seed)));
  const got = flatten((job.output as Record<string, unknown>).probabilities).map(Number);
  expect(maxAbsDiff(got, want), `job ${job.id}`).to.be.at.most(1e-5);
}

describe('envelopes: the writer', () => {
  let redis: Redis;
  let repo: ModelRepository;
  let prefix: string;
  before(async () => {
    redis = new Redis(TEST_REDIS_URL);
    repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
    prefix = uniquePrefix('env');
  });
  after(async () => {
    await repo.close();
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  function writer(maxQueueDepth = 1_000_000): EnvelopeWriter {
    return new EnvelopeWriter({ redis, prefix, resultTtlMs: 60_000, maxQueueDepth, gatewayChannel: `${prefix}:gateway:test` });
  }

  function job(model: ReturnType<ModelRepository['resolve']>): { job: EnvelopeJob; inputs: ReturnType<typeof decodeInput>[] } {
    return {
      job: { id: newJobId(queueTag(model.name, model.version)), tenant: 't', created_at: Date.now() },
      inputs: [decodeInput(featuresOf(1), model.inputs[0]!)],
    };
  }

  it('writes the jobs added in one turn as one envelope, a later turn as another, and none larger than max_batch_size', async () => {
    const model = repo.resolve('mlp', '1');
    const sizes: number[] = [];
    const w = new EnvelopeWriter({ redis, prefix, resultTtlMs: 60_000, maxQueueDepth: 1_000_000, gatewayChannel: 'c', onEnvelope: (_, n) => sizes.push(n) });
    const k = interactiveKeys(prefix, 'mlp', '1');
    const before = await redis.llen(k.wait);
    // One turn: 10 jobs.
    await Promise.all(Array.from({ length: 10 }, () => job(model)).map((j) => w.add(model, j.job, j.inputs)));
    // The next turn: 1 job; then one turn of max_batch_size + 3.
    const one = job(model);
    await w.add(model, one.job, one.inputs);
    await Promise.all(Array.from({ length: model.maxBatchSize + 3 }, () => job(model)).map((j) => w.add(model, j.job, j.inputs)));
    expect(sizes).to.deep.equal([10, 1, model.maxBatchSize, 3]);
    expect((await redis.llen(k.wait)) - before).to.equal(4);
    expect(await redis.get(k.queued)).to.equal(String(14 + model.maxBatchSize));
  });

  it('refuses, whole or in part, what would pass MAX_QUEUE_DEPTH, and keeps what fits in arrival order', async () => {
    const model = repo.resolve('mlp', '2');
    // The limit is over every queue a gateway wrote to: the test before this one filled version 1's.
    const queuedNow = async (v: string) => Number((await redis.get(interactiveKeys(prefix, 'mlp', v).queued)) ?? 0);
    const w = writer((await queuedNow('1')) + (await queuedNow('2')) + 6);
    const jobs = Array.from({ length: 10 }, () => job(model));
    const outcomes = await Promise.allSettled(jobs.map((j) => w.add(model, j.job, j.inputs)));
    expect(outcomes.map((o) => o.status)).to.deep.equal([...new Array(6).fill('fulfilled'), ...new Array(4).fill('rejected')]);
    const reason = (outcomes[9] as PromiseRejectedResult).reason as { status: number; code: string };
    expect([reason.status, reason.code]).to.deep.equal([503, 'queue_full']);
    const index = interactiveKeys(prefix, 'mlp', '2').index;
    for (const [i, j] of jobs.entries()) expect(await redis.hexists(index, j.job.id), `job ${i}`).to.equal(i < 6 ? 1 : 0);
  });

  it("an idle worker's blocking take returns the envelope whose write ended the wait, started no earlier than it was written", async () => {
    const p = uniquePrefix('take');
    const model = repo.resolve('mlp', '1');
    const queue = new EnvelopeQueue(redis, { prefix: p, model: 'mlp', version: '1', resultTtlMs: 60_000 });
    const blocking = redis.duplicate();
    try {
      // Nothing waits: the take gives up after its timeout, empty.
      expect(await queue.waitAndFetch(blocking, 0.05, 'tok', 30_000, 64, 64)).to.deep.equal({ waiting: 0, envelopes: [] });

      const name = `${p}-blocking`;
      await blocking.client('SETNAME', name);
      const taking = queue.waitAndFetch(blocking, 10, 'tok', 30_000, 64, 64);
      await waitUntil(async () => / flags=b /.test(((await redis.client('LIST')) as string).split('\n').find((l) => l.includes(`name=${name} `)) ?? ''), 5000, 'the take to block');
      const w = new EnvelopeWriter({ redis, prefix: p, resultTtlMs: 60_000, maxQueueDepth: 1_000_000, gatewayChannel: `${p}:gateway:test` });
      const one = job(model);
      await w.add(model, one.job, one.inputs);
      const taken = await taking;
      if (taken === 'paused') throw new Error('the queue is not paused');
      expect(taken.waiting).to.equal(0);
      expect(taken.envelopes).to.have.length(1);
      const k = interactiveKeys(p, 'mlp', '1');
      const [written, processedOn] = (await redis.hmget(`${k.base}${taken.envelopes[0]!.id}`, 'timestamp', 'processedOn')).map(Number);
      // The take ran when the write ended the wait, later than the clock it was sent with: its start is not before the write.
      expect(processedOn).to.be.at.least(written!);
      expect(processedOn).to.be.at.least(one.job.created_at);
    } finally {
      blocking.disconnect();
      await deletePrefix(TEST_REDIS_URL, p);
    }
  });

  // One gateway holds TENANT_MAX_QUEUED and MAX_QUEUE_DEPTH across queues (docs/api.md: only a burst through
  // different gateways may go over): envelopes for two versions written in one turn must each count the one
  // begun before it, and never twice.
  describe('two model versions in one turn', () => {
    function jobsFor(version: string, n: number, tenant: string) {
      const model = repo.resolve('mlp', version);
      return Array.from({ length: n }, () => ({
        model,
        job: { id: newJobId(queueTag('mlp', version)), tenant, created_at: Date.now() } as EnvelopeJob,
        inputs: [decodeInput(featuresOf(1), model.inputs[0]!)],
      }));
    }

    /** A writer with both versions' queues open, as a gateway has them from its start (ModelCatalog.onVersion → queueOf). */
    function openedWriter(options: { maxQueueDepth?: number; tenantMaxQueued?: number }): EnvelopeWriter {
      const w = new EnvelopeWriter({ redis, prefix, resultTtlMs: 60_000, maxQueueDepth: options.maxQueueDepth ?? 1_000_000, tenantMaxQueued: options.tenantMaxQueued, gatewayChannel: `${prefix}:gateway:t` });
      for (const v of ['1', '2']) w.queueOf(repo.resolve('mlp', v));
      return w;
    }

    async function queuedFor(tenant: string): Promise<number> {
      let sum = 0;
      for (const v of ['1', '2']) sum += Number((await redis.hget(interactiveKeys(prefix, 'mlp', v).tenants, tenant)) ?? 0);
      return sum;
    }

    it('TENANT_MAX_QUEUED=6: six jobs for version 1 and six for version 2 in one turn leave the tenant with 6 queued', async () => {
      const w = openedWriter({ tenantMaxQueued: 6 });
      const all = [...jobsFor('1', 6, 'cap-t'), ...jobsFor('2', 6, 'cap-t')];
      const outcomes = await Promise.allSettled(all.map((j) => w.add(j.model, j.job, j.inputs)));
      const accepted = outcomes.filter((o) => o.status === 'fulfilled').length;
      const queued = await queuedFor('cap-t');
      expect(queued, 'the tenant hash agrees with the answers').to.equal(accepted);
      // Not 12, twice the cap, as when each envelope left the other out.
      expect(accepted, `one gateway accepted ${accepted} jobs for a tenant capped at 6`).to.equal(6);
    });

    it('under both limits, jobs spread over two versions in one turn are all accepted (nobody counted twice)', async () => {
      const w = openedWriter({ tenantMaxQueued: 12, maxQueueDepth: 1_000_000 });
      const all = [...jobsFor('1', 6, 'room-t'), ...jobsFor('2', 6, 'room-t')];
      const outcomes = await Promise.allSettled(all.map((j) => w.add(j.model, j.job, j.inputs)));
      expect(outcomes.map((o) => o.status)).to.deep.equal(new Array(12).fill('fulfilled'));
      expect(await queuedFor('room-t')).to.equal(12);
    });

    it('MAX_QUEUE_DEPTH=8: eight jobs for each of two versions in one turn leave 8 queued', async () => {
      const queuedInBoth = async () => {
        let sum = 0;
        for (const v of ['1', '2']) sum += Number((await redis.get(interactiveKeys(prefix, 'mlp', v).queued)) ?? 0);
        return sum;
      };
      const before = await queuedInBoth();
      const w = openedWriter({ maxQueueDepth: before + 8 });
      const all = [...jobsFor('1', 8, 'depth-t'), ...jobsFor('2', 8, 'depth-t')];
      const outcomes = await Promise.allSettled(all.map((j) => w.add(j.model, j.job, j.inputs)));
      const accepted = outcomes.filter((o) => o.status === 'fulfilled').length;
      expect((await queuedInBoth()) - before).to.equal(accepted);
      expect(accepted, `one gateway accepted ${accepted} jobs under a depth limit leaving room for 8`).to.equal(8);
    });
  });
});

describe('envelopes: every job keeps its own promises', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  it('concurrent submits share envelopes, and each job gets its own id, status and output', async () => {
    const probe = new QueueProbe(TEST_REDIS_URL, p.prefix, [['mlp', '2']]);
    try {
      // Whether requests land in one turn of the gateway's event loop is up to the sockets:
      // burst until one envelope holds several jobs (the writer's own test pins the rule down).
      const submitted: Array<{ id: string; seed: number }> = [];
      let shared = false;
      for (let burst = 0; burst < 5 && !shared; burst++) {
        const before = await probe.snapshot();
        const answers = await Promise.all(Array.from({ length: 48 }, (_, i) => postJob(p, body(100 + burst * 48 + i))));
        const after = await probe.snapshot();
        expect(after.queued - before.queued).to.equal(48);
        shared = after.envelopes - before.envelopes < 48;
        answers.forEach((a, i) => {
          expect(a.job.status).to.equal('queued');
          submitted.push({ id: a.job.id, seed: 100 + burst * 48 + i });
        });
      }
      expect(shared, 'some envelope carried more than one job').to.equal(true);
      expect(new Set(submitted.map((s) => s.id)).size).to.equal(submitted.length);
      await p.startWorker();
      for (const s of submitted) expectMlpOutput(await pollJob(p, s.id), s.seed);
    } finally {
      await probe.close();
    }
  });
});

describe('envelopes: cancel one job of an envelope', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let redis: Redis;
  beforeEach(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL);
  });
  afterEach(async () => {
    redis.disconnect();
    await p?.close();
  });

  it('while queued: only that job is canceled and it never runs; the others of its envelope succeed', async () => {
    const probe = new QueueProbe(TEST_REDIS_URL, p.prefix, [['mlp', '2']]);
    const submitted = await Promise.all(Array.from({ length: 12 }, (_, i) => postJob(p, body(200 + i))));
    const envelopes = (await probe.snapshot()).envelopes;
    await probe.close();
    const victim = submitted[5]!.job.id;
    const canceled = await p.api(`/v1/jobs/${victim}/cancel`, { method: 'POST' });
    expect(canceled.status).to.equal(200);
    expect(((await canceled.json()) as Job).status).to.equal('canceled');
    expect(await redis.get(interactiveKeys(p.prefix, 'mlp', '2').queued), 'queued instances after the cancel').to.equal('11');
    const worker = await p.startWorker();
    const ended = await Promise.all(submitted.map((s) => pollJob(p, s.job.id)));
    ended.forEach((job, i) => {
      if (i === 5) {
        expect(job.status).to.equal('canceled');
        expect(job.metrics, 'a canceled job never ran').to.equal(null);
        expect(job.output).to.equal(null);
      } else {
        expectMlpOutput(job, 200 + i);
      }
    });
    const runs = await worker.metrics.registry.getSingleMetricAsString('infer_jobs_ended_total');
    expect(runs).to.match(/infer_jobs_ended_total\{model="mlp",version="2",status="succeeded"\} 11\b/);
    expect(envelopes).to.be.at.least(1);
  });

  it('while running: only that job is canceled, its output is discarded, and the worker ends the others', async () => {
    const repo = p.gateway.models;
    const model = repo.resolve('mlp', '2');
    const submitted = await Promise.all(Array.from({ length: 6 }, (_, i) => postJob(p, body(300 + i))));
    // Take the envelopes as a worker would (the real take script), then cancel one job while they are "running".
    const queue = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: 60_000 });
    const taken = await queue.fetch('tok', 30_000, 64, 64);
    if (taken === 'paused') throw new Error('paused');
    const running = await getJob(p, submitted[2]!.job.id);
    expect(running.status).to.equal('running');
    const res = await p.api(`/v1/jobs/${submitted[2]!.job.id}/cancel`, { method: 'POST' });
    expect(res.status).to.equal(200);
    // The "worker" ends every job, the canceled one included: its result must be discarded.
    const finishing = finishEvery(taken.envelopes, {
      status: 'succeeded',
      metrics: { queue_ms: 1, inference_ms: 1, batch_size: 6 },
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [4], bytes: Buffer.from(new Float32Array([0.25, 0.25, 0.25, 0.25]).buffer) }],
    });
    const ended = await queue.finish(finishing);
    const order = finishing.flatMap((e) => e.jobs.map((j) => j.id));
    expect(ended.filter(Boolean)).to.have.length(5);
    expect(ended[order.indexOf(submitted[2]!.job.id)]).to.equal(false);
    for (const s of submitted) {
      const job = await getJob(p, s.job.id);
      expect(job.status).to.equal(s === submitted[2] ? 'canceled' : 'succeeded');
    }
    expect(model.name).to.equal('mlp');
    // Nothing is left of the envelopes: no queued entry, no index, nothing active.
    const k = interactiveKeys(p.prefix, 'mlp', '2');
    expect([await redis.llen(k.wait), await redis.llen(k.active), await redis.hlen(k.index)]).to.deep.equal([0, 0, 0]);
  });
});

describe('envelopes: a worker dies holding an envelope', function () {
  this.timeout(40_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver<JobEvent>;
  beforeEach(async () => {
    hooks = await startWebhookReceiver();
    p = await startPlatform({ worker: false, env: { WORKER_LOCK_MS: '1000', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100,200' } });
  });
  afterEach(async () => {
    await p?.close();
    await hooks?.close();
  });

  /** A worker that takes every queued envelope and dies at once (its 1 s lock is never renewed): their jobs. */
  async function zombieTake(redis: Redis): Promise<EnvelopeJob[]> {
    const zombie = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: 60_000 });
    const taken = await zombie.fetch('zombie', 1000, 64, 64);
    return (taken === 'paused' ? [] : taken.envelopes).flatMap((e) => (JSON.parse(e.fields.get('data')!.toString()) as { jobs: EnvelopeJob[] }).jobs);
  }

  it('each of its jobs still ends exactly once, with one job.completed', async () => {
    const submitted = await Promise.all(Array.from({ length: 8 }, (_, i) => postJob(p, body(400 + i, { webhook: hooks.url, webhook_events_filter: ['start', 'completed'] }))));
    const redis = new Redis(TEST_REDIS_URL);
    try {
      expect(await zombieTake(redis)).to.have.length(8);
    } finally {
      redis.disconnect();
    }
    // A live worker's stalled check puts them back, and it runs them.
    await p.startWorker();
    const ended = await Promise.all(submitted.map((s) => pollJob(p, s.job.id, 20_000)));
    ended.forEach((job, i) => expectMlpOutput(job, 400 + i));
    await waitUntil(() => delivered(hooks, 'job.completed').length >= 8, 15_000, 'eight job.completed events');
    const completed = delivered(hooks, 'job.completed').map((d) => d.event.data);
    expect(completed.map((e) => e.id).sort()).to.deep.equal(submitted.map((s) => s.job.id).sort());
    expect(completed.every((e) => e.status === 'succeeded')).to.equal(true);
    // job.started: the worker that died took the envelopes and sent none; the live one's take sends each job's, once.
    await waitUntil(() => delivered(hooks, 'job.started').length >= 8, 15_000, 'eight job.started events');
    const started = delivered(hooks, 'job.started').map((d) => d.event.data.id);
    expect(started.sort()).to.deep.equal(submitted.map((s) => s.job.id).sort());
  });

  it('the take after the stall sends no second job.started, and each job ends once', async () => {
    const submitted = await Promise.all(Array.from({ length: 6 }, (_, i) => postJob(p, body(600 + i, { webhook: hooks.url, webhook_events_filter: ['start', 'completed'] }))));
    // This one sends job.started, as a take does, before it dies.
    const redis = new Redis(TEST_REDIS_URL);
    const events = new WebhookEvents({ connection: redis, prefix: p.prefix, resultTtlMs: 60_000, retryDelaysMs: [100, 200] });
    try {
      const jobs = await zombieTake(redis);
      expect(jobs.length).to.equal(6);
      // Queued, not yet delivered: the deliveries run in the worker process, started below.
      await new JobWebhookEmitter(events, silentLogger).started(jobs.map((job) => ({ model: 'mlp', version: '2', job })), Date.now());
    } finally {
      await events.close();
      redis.disconnect();
    }
    await p.startWorker();
    const ended = await Promise.all(submitted.map((s) => pollJob(p, s.job.id, 20_000)));
    ended.forEach((job, i) => expectMlpOutput(job, 600 + i));
    await waitUntil(() => delivered(hooks, 'job.completed').length >= 6, 15_000, 'six job.completed events');
    await waitUntil(() => delivered(hooks, 'job.started').length >= 6, 15_000, 'six job.started events');
    const started = delivered(hooks, 'job.started').map((d) => d.event.data.id);
    expect(started.sort(), 'one job.started a job, from the first take').to.deep.equal(submitted.map((s) => s.job.id).sort());
    expect(delivered(hooks, 'job.completed')).to.have.length(6);
  });

  it('a take after the stall makes no job.started again though the delivered ones have expired', async () => {
    const submitted = await Promise.all(Array.from({ length: 4 }, (_, i) => postJob(p, body(700 + i, { webhook: hooks.url, webhook_events_filter: ['start', 'completed'] }))));
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const events = new WebhookEvents({ connection: redis, prefix: p.prefix, resultTtlMs: 60_000, retryDelaysMs: [100, 200] });
    let deliveries: WebhookDeliveryWorker | undefined;
    try {
      deliveries = new WebhookDeliveryWorker({ connection: redis, prefix: p.prefix, logger: silentLogger, retryDelaysMs: [100, 200], resultTtlMs: 60_000, allowPrivate: true, lockMs: 2000 });
      // The first take makes and queues the job.started events and marks its envelope so, as a worker's take
      // does; they are delivered; then the take's worker hangs past its lock.
      const zombie = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: 60_000 });
      const taken = await zombie.fetch('zombie', 1000, 64, 64);
      if (taken === 'paused') throw new Error('paused');
      const jobs = taken.envelopes.flatMap((e) => (JSON.parse(e.fields.get('data')!.toString()) as { jobs: EnvelopeJob[] }).jobs);
      expect(jobs).to.have.length(4);
      expect(await new JobWebhookEmitter(events, silentLogger).started(jobs.map((job) => ({ model: 'mlp', version: '2', job })), Date.now())).to.equal(true);
      for (const e of taken.envelopes) await zombie.markStartedSent(e.id);
      await waitUntil(() => delivered(hooks, 'job.started').length >= 4, 10_000, 'four job.started events');
      // Their log entries live RESULT_TTL from delivery: a job stalled longer than that (a short RESULT_TTL_SECONDS) finds them gone.
      for (const job of jobs) await redis.del(keys(p.prefix).webhookEvent(eventIdFor('job.started', job.id)));
    } finally {
      await deliveries?.close();
      await events.close();
      redis.disconnect();
    }
    await p.startWorker();
    const ended = await Promise.all(submitted.map((s) => pollJob(p, s.job.id, 20_000)));
    ended.forEach((job, i) => expectMlpOutput(job, 700 + i));
    await waitUntil(() => delivered(hooks, 'job.completed').length >= 4, 15_000, 'four job.completed events');
    await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'the webhook queue idle');
    expect(delivered(hooks, 'job.started').map((d) => d.event.data.id).sort(), 'one job.started a job, from the first take').to.deep.equal(submitted.map((s) => s.job.id).sort());
  });
});

describe('envelopes: a worker dies between ending jobs and sending their job.completed', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver<JobEvent>;
  before(async () => {
    hooks = await startWebhookReceiver();
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100,200' } });
  });
  after(async () => {
    await p?.close();
    await hooks?.close();
  });

  it('the next outbox drain sends each one, once, even when it runs again after a crash mid-drain', async () => {
    const submitted = await Promise.all(Array.from({ length: 4 }, (_, i) => postJob(p, body(500 + i, { webhook: hooks.url }))));
    const redis = new Redis(TEST_REDIS_URL);
    try {
      // A worker ends the jobs (FINISH puts them on the outbox) and dies before draining it.
      const queue = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: 60_000 });
      const taken = await queue.fetch('dies-after-finish', 30_000, 64, 64);
      if (taken === 'paused') throw new Error('paused');
      await queue.finish(finishEvery(taken.envelopes, { status: 'failed', error: { code: 'test', message: 'ended by the test' } }, true));
      const outbox = interactiveKeys(p.prefix, 'mlp', '2').outbox;
      expect((await redis.lrange(outbox, 0, -1)).sort()).to.deep.equal(submitted.map((s) => s.job.id).sort());
      // A drain that died after creating the events and before taking the ids off leaves them twice over.
      await redis.lpush(outbox, ...submitted.map((s) => s.job.id));
    } finally {
      redis.disconnect();
    }
    // A live worker's first outbox sweep (at start, then every 5 s) sends each job.completed once.
    await p.startWorker();
    await waitUntil(() => delivered(hooks, 'job.completed').length >= 4, 10_000, 'four job.completed events');
    const check = new Redis(TEST_REDIS_URL);
    try {
      await waitUntil(async () => (await check.llen(interactiveKeys(p.prefix, 'mlp', '2').outbox)) === 0, 5000, 'the outbox to drain');
    } finally {
      check.disconnect();
    }
    const received = delivered(hooks, 'job.completed');
    const ids = received.map((d) => d.event.data.id);
    expect([...ids].sort()).to.deep.equal(submitted.map((s) => s.job.id).sort());
    expect(new Set(received.map((d) => String(d.headers['webhook-id']))).size).to.equal(4);
  });
});

describe('envelopes: a worker dies once its jobs ended, their job.started still being made', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver<JobEvent>;
  before(async () => {
    hooks = await startWebhookReceiver();
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100,200' } });
  });
  after(async () => {
    await p?.close();
    await hooks?.close();
  });

  it('FINISH puts their job.started on the outbox; the next drain sends each once, as the job was while it ran', async () => {
    const filter = { webhook: hooks.url, webhook_events_filter: ['start', 'completed'] };
    const submitted = await Promise.all(Array.from({ length: 3 }, (_, i) => postJob(p, body(600 + i, filter))));
    const redis = new Redis(TEST_REDIS_URL);
    const startedAt = Date.now();
    try {
      // A worker takes the jobs, ends them before its job.started events are made (it says so to FINISH), and dies.
      const queue = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: 60_000 });
      const taken = await queue.fetch('dies-before-started', 30_000, 64, 64);
      if (taken === 'paused') throw new Error('paused');
      const finishing = taken.envelopes.map((e) => {
        const data = JSON.parse(e.fields.get('data')!.toString()) as { gateway: string; jobs: EnvelopeJob[] };
        const ending = { status: 'failed', startedAt, completedAt: startedAt + 5, error: { code: 'test', message: 'ended by the test' } } as const;
        return { id: e.id, gateway: data.gateway, jobs: data.jobs.map((job) => ({ id: job.id, wait: false, completedHook: true, startedOwed: true, record: encodeRecord('mlp', '2', job, ending) })) };
      });
      await queue.finish(finishing);
      const ids = submitted.map((s) => s.job.id);
      expect((await redis.lrange(interactiveKeys(p.prefix, 'mlp', '2').outbox, 0, -1)).sort()).to.deep.equal([...ids, ...ids.map((id) => `s:${id}`)].sort());
    } finally {
      redis.disconnect();
    }
    // A live worker's first outbox sweep sends them.
    await p.startWorker();
    await waitUntil(() => delivered(hooks, 'job.started').length >= 3 && delivered(hooks, 'job.completed').length >= 3, 10_000, 'three job.started and three job.completed');
    const started = delivered(hooks, 'job.started');
    expect(started.map((d) => d.event.data.id).sort()).to.deep.equal(submitted.map((s) => s.job.id).sort());
    expect(new Set(started.map((d) => String(d.headers['webhook-id']))).size).to.equal(3);
    for (const d of started) {
      const job = submitted.find((s) => s.job.id === d.event.data.id)!.job;
      // As the job read while it ran: running since the take, nothing of its end.
      expect(d.event.data).to.deep.equal({ ...job, status: 'running', started_at: new Date(startedAt).toISOString(), webhook_events_filter: ['start', 'completed'] });
    }
    const check = new Redis(TEST_REDIS_URL);
    try {
      await waitUntil(async () => (await check.llen(interactiveKeys(p.prefix, 'mlp', '2').outbox)) === 0, 5000, 'the outbox to drain');
    } finally {
      check.disconnect();
    }
  });
});

describe('envelopes: MAX_QUEUE_DEPTH counts instances, across gateways', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let second: Gateway;
  let secondUrl: string;
  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: '50' } });
    second = await createGateway(p.config, silentLogger);
    secondUrl = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await second?.close();
    await p?.close();
  });

  it('a burst from two gateways over two model versions is held to the limit', async () => {
    const post = (base: string, version: string, seed: number) =>
      fetch(`${base}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mlp', version, input: { features: featuresOf(seed) } }),
      });
    const answers = await Promise.all(
      Array.from({ length: 120 }, (_, i) => post(i % 2 ? p.baseUrl : secondUrl, i % 3 ? '2' : '1', i)),
    );
    const accepted = answers.filter((r) => r.status === 202).length;
    const full = answers.filter((r) => r.status === 503).length;
    expect(accepted + full).to.equal(120);
    // Each queue holds an allowance of the limit, moved between queues under a lock (test/envelopes-limits-across-queues.test.ts has the worst case).
    expect(accepted, `accepted ${accepted}`).to.be.within(45, 55);
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const queued = (await Promise.all(['1', '2'].map((v) => redis.hlen(interactiveKeys(p.prefix, 'mlp', v).index)))).reduce((a, b) => a + b, 0);
      expect(queued).to.equal(accepted);
    } finally {
      redis.disconnect();
    }
    await Promise.all(answers.map((r) => r.body?.cancel()));
  });
});
