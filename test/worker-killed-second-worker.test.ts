import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, newJobId, queueTag, type EnvelopeJob, type Job } from '@infer/contract';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { getJob, pollJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { parse, value } from './helpers/prometheus.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * docs/architecture.md "A worker dies": its envelopes' locks lapse after WORKER_LOCK_MS, another worker's
 * stalled check puts them back and runs them; each job ends once. docs/webhooks.md: one job.started and one
 * job.completed event per job at most, none twice, a worker that takes a job over creates any missing.
 *
 * Worker A (a process of its own) takes a 4-job envelope and is SIGKILLed (its whole group) in the middle of
 * the model run, while worker B (in this process) serves the same queue. B must take the envelope back and
 * end every job exactly once, right.
 */

type JobEvent = { type: string; data: Job };

const LEN = 1536;
const JOBS = 4;

/** Job j's input: a unit vector (so (x·xᵀ)^(2^k) = x·xᵀ and the cubic model's y is (Σx)²), distinct per job. */
function unitInput(j: number): Float32Array {
  const raw = Array.from({ length: LEN }, (_, i) => 1 + ((i * (j + 3)) % 7) / 7);
  const norm = Math.sqrt(raw.reduce((s, v) => s + v * v, 0));
  return Float32Array.from(raw.map((v) => v / norm));
}
function expectedY(x: Float32Array): number {
  let sum = 0;
  let sq = 0;
  for (const v of x) {
    sum += v;
    sq += v * v;
  }
  return sum * sum * Math.pow(sq, 255);
}

describe('lifecycle: a worker SIGKILLed mid-run of a multi-job envelope, a second worker serving the queue', function () {
  this.timeout(180_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let hooks: WebhookReceiver<JobEvent>;
  let a: Spawned | undefined;
  let takenByA = 0;
  let killedAt = 0;
  let endedJobs: Job[] = [];

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(8), config: { max_batch_size: 4, max_delay_ms: 2 } } });
    hooks = await startWebhookReceiver<JobEvent>();
    p = await startPlatform({
      models: repo.root,
      worker: false,
      env: { WORKER_LOCK_MS: '2000', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '200,400,800' },
    });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    a?.kill();
    await a?.exited;
    redis?.disconnect();
    await p?.close();
    await hooks?.close();
    repo?.remove();
  });

  it('B takes the envelope back after the lock lapses; each job ends once, right, with one job.started and one job.completed event', async () => {
    a = new Spawned('start:worker', {
      REDIS_URL: p.config.redisUrl,
      QUEUE_PREFIX: p.prefix,
      MODEL_REPOSITORY: repo.root,
      WORKER_METRICS_PORT: '0',
      WORKER_LOCK_MS: '2000',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_DELAYS_MS: '200,400,800',
      API_KEYS: 'tenant-a:test-key-a',
    });
    await a.waitForLog('worker started', 60_000);

    // One envelope of 4 jobs, as a gateway writes the jobs it accepted in one turn.
    const model = p.gateway.models.resolve('cubic', '1');
    // Written for the in-process gateway: its first job is waited for (Prefer: wait) there.
    const writer = new EnvelopeWriter({ redis, prefix: p.prefix, resultTtlMs: 600_000, maxQueueDepth: 1_000_000, gatewayChannel: p.gateway.waiters.channel });
    const inputs = Array.from({ length: JOBS }, (_, j) => unitInput(j));
    let waited: Promise<Buffer | undefined> | undefined;
    const jobs = inputs.map((x, j) => {
      const job: EnvelopeJob = {
        id: newJobId(queueTag('cubic', '1')),
        tenant: 'tenant-a',
        created_at: Date.now(),
        shapes: [[LEN]],
        webhook: hooks.url,
        webhook_events_filter: ['start', 'completed'],
        ...(j === 0 ? { wait: true as const } : {}),
      };
      // A waiter is registered before the enqueue, as the submit route does.
      if (j === 0) waited = p.gateway.waiters.register(job.id, 120_000).promise;
      return { id: job.id, written: writer.add(model, job, [decodeInput(Array.from(x), model.inputs[0]!)]) };
    });
    await Promise.all(jobs.map((j) => j.written));
    const ids = jobs.map((j) => j.id);
    const k = interactiveKeys(p.prefix, 'cubic', '1');
    const index = await redis.hgetall(k.index);
    expect(new Set(ids.map((id) => index[id])).size, 'the 4 jobs are in one envelope').to.equal(1);

    // A takes it and runs it.
    const running = await waitUntil(async () => {
      const read = await Promise.all(ids.map((id) => getJob(p, id)));
      return read.every((j) => j.status === 'running') ? read : undefined;
    }, 30_000, 'A to take the envelope');
    takenByA = Date.parse(running[0]!.started_at!);
    // B comes up meanwhile, serving the same queue.
    const b = await p.startWorker();
    const stillRunning = (await Promise.all(ids.map((id) => getJob(p, id)))).every((j) => j.status === 'running');
    expect(stillRunning, 'A still in its run when it is killed (make the run longer)').to.equal(true);
    killedAt = Date.now();
    a.signalGroup('SIGKILL');
    const exit = await a.exit(10_000);
    expect(exit.signal).to.equal('SIGKILL');
    expect(a.logged('job ended'), 'A ended nothing before it died').to.have.length(0);

    const ended = await Promise.all(ids.map((id) => pollJob(p, id, 90_000)));
    endedJobs = ended;
    // The request waiting on job 0 hears of its end from B (not only from its timeout).
    const record = await waited!;
    expect(record, 'the waiting request woken with the ended record').to.not.equal(undefined);
    ended.forEach((job, j) => {
      expect(job.status, `job ${j}: ${JSON.stringify(job.error)}`).to.equal('succeeded');
      const y = (job.output as { y: number[] }).y[0]!;
      const want = expectedY(inputs[j]!);
      expect(Math.abs(y - want) / want, `job ${j}: y ${y} against ${want}`).to.be.below(1e-2);
      expect(Date.parse(job.completed_at!), 'ended after A died').to.be.greaterThan(killedAt);
      // Taken again after a stall, an envelope's jobs run one at a time (a crashing input then fails alone).
      expect(job.metrics!.batch_size).to.equal(1);
      expect(job.metrics!.queue_ms).to.be.at.least(0);
    });

    // One job.completed delivery per job (the receiver answers 204 at once: nothing to retry), one job.started event per job.
    await waitUntil(() => hooks.deliveries.filter((d) => d.event.type === 'job.completed').length >= JOBS, 20_000, 'a job.completed per job');
    await waitUntil(async () => (await redis.llen(k.outbox)) === 0 && (await redis.llen(k.active)) === 0 && (await redis.llen(k.wait)) === 0, 20_000, 'the queue to empty');
    for (const id of ids) {
      const res = await p.api(`/v1/jobs/${id}/webhook_deliveries`);
      expect(res.status).to.equal(200);
      const list = ((await res.json()) as { data: Array<{ id: string; event_type: string; state: string; attempt_count: number }> }).data;
      await waitUntil(async () => {
        const again = ((await (await p.api(`/v1/jobs/${id}/webhook_deliveries`)).json()) as { data: Array<{ state: string }> }).data;
        return again.every((d) => d.state !== 'pending');
      }, 20_000, `job ${id}'s deliveries to settle`);
      expect(list.map((d) => d.event_type).sort(), `job ${id}'s events`).to.deep.equal(['job.completed', 'job.started']);
    }
    const completed = hooks.deliveries.filter((d) => d.event.type === 'job.completed');
    expect(completed.map((d) => d.event.data.id).sort(), 'one job.completed delivery per job').to.deep.equal([...ids].sort());
    for (const d of completed) expect(d.event.data.status).to.equal('succeeded');
    const startedIds = new Set(hooks.deliveries.filter((d) => d.event.type === 'job.started').map((d) => d.headers['webhook-id']));
    expect(startedIds.size, 'job.started events (by webhook-id)').to.equal(JOBS);

    // The books: nothing queued, nothing indexed; B counted the 4 ends, once each.
    expect(Number(await redis.get(k.queued))).to.equal(0);
    expect(await redis.hlen(k.index)).to.equal(0);
    const samples = parse(await (await fetch(`http://127.0.0.1:${b.metricsPort}/metrics`)).text());
    const labels = { model: 'cubic', version: '1' };
    expect(value(samples, 'infer_jobs_ended_total', { ...labels, status: 'succeeded' }), 'succeeded ends counted by B').to.equal(JOBS);
    expect(value(samples, 'infer_jobs_ended_total', { ...labels, status: 'failed' })).to.equal(0);
    expect(value(samples, 'infer_inference_queue_duration_seconds_count', labels)).to.equal(JOBS);
    expect(value(samples, 'infer_inference_request_duration_seconds_count', labels)).to.equal(JOBS);
    expect(value(samples, 'infer_inference_count_total', labels)).to.equal(JOBS);
    const gw = parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
    expect(value(gw, 'infer_queue_depth', labels)).to.equal(0);
  });

  it("a job's started_at and queue_ms after the take-back name a take that happened: A's (the first) or B's (after A died), not a moment in between (B's blocking read being sent)", () => {
    expect(endedJobs).to.have.length(JOBS);
    for (const job of endedJobs) {
      const started = Date.parse(job.started_at!);
      const msg = `started_at ${job.started_at}: A took it at ${new Date(takenByA).toISOString()}, A was killed at ${new Date(killedAt).toISOString()}, the job ended at ${job.completed_at}`;
      // A renewed its lock (PX 2000) every second until it died: it lapsed 1 s after the kill at the earliest.
      expect(started === takenByA || started >= killedAt + 900, msg).to.equal(true);
      expect(job.metrics!.queue_ms, 'queue_ms = started_at - created_at').to.equal(started - Date.parse(job.created_at));
    }
  });
});
