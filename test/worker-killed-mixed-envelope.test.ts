import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, isEnded, type Job } from '@infer/contract';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * A worker process SIGKILLed (its group) mid-run of an envelope
 * whose jobs each carry their own promise: three submitted with Prefer: wait,
 * one with a Cancel-After deadline that passes while the dead worker holds it
 * (taken in time: it must run), one canceled while running (canceled it
 * stays), one long-polled. Another worker takes the envelope back: every job
 * ends once, every waiting request hears its own final job, one job.completed
 * each (docs/architecture.md "A worker dies", docs/webhooks.md).
 */

type JobEvent = { type: string; data: Job };
const LEN = 2048;

describe('a worker killed mid-envelope, its jobs each with its own promise', function () {
  this.timeout(240_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let hooks: WebhookReceiver<JobEvent>;
  let redis: Redis;
  let a: Spawned | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(8), config: { max_batch_size: 8, max_delay_ms: 2 } } });
    hooks = await startWebhookReceiver<JobEvent>();
    p = await startPlatform({ models: repo.root, worker: false, env: { WORKER_LOCK_MS: '2000', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '200,400,800', MAX_WAIT_SECONDS: '120' } });
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

  it('each job ends once: waits answered with their own final job, the canceled one canceled, the deadline one run, one job.completed each', async () => {
    const n = 6;
    const jobBody = (i: number) =>
      JSON.stringify({ model: 'cubic', input: { x: Array.from({ length: LEN }, (_, k) => ((k + i) % 5) / 1000) }, metadata: { i }, webhook: hooks.url, webhook_events_filter: ['start', 'completed'] });
    const headersOf = (i: number): Record<string, string> => (i < 3 ? { prefer: 'wait=120' } : i === 3 ? { 'cancel-after': '15s' } : {});
    // Queued before any worker is up (a fleet with no worker queues them), so A takes them all in one micro-batch.
    const sent = Array.from({ length: n }, (_, i) => p.api('/v1/jobs', { method: 'POST', body: jobBody(i), headers: headersOf(i) }));
    const k = interactiveKeys(p.prefix, 'cubic', '1');
    await waitUntil(async () => (await redis.hlen(k.index)) === n, 10_000, 'the six jobs queued');
    const index = await redis.hgetall(k.index);
    const byI = new Map<number, string>();
    for (const id of Object.keys(index)) {
      const j = (await (await p.api(`/v1/jobs/${id}`)).json()) as Job;
      byI.set((j.metadata as { i: number }).i, id);
    }
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
    // A takes the envelopes and runs them.
    await waitUntil(async () => {
      const js = await Promise.all([...byI.values()].map(async (id) => ((await (await p.api(`/v1/jobs/${id}`)).json()) as Job).status));
      return js.every((s) => s === 'running');
    }, 30_000, 'A to take the envelope');
    const takenBy = Date.now();
    const later = sent.slice(3).map((r) => r.then(async (res) => (await res.json()) as Job));
    // Job 4 canceled while running on A; job 5 long-polled.
    const canceled = await p.api(`/v1/jobs/${byI.get(4)}/cancel`, { method: 'POST' });
    expect(canceled.status).to.equal(200);
    const polled = p.api(`/v1/jobs/${byI.get(5)}`, { headers: { prefer: 'wait=120' } });
    a.signalGroup('SIGKILL');
    expect((await a.exit(10_000)).signal).to.equal('SIGKILL');
    expect(a.logged('job ended'), 'A ended nothing').to.have.length(0);
    expect(takenBy, 'A took job 3 before its deadline').to.be.below(Date.parse((await later[0]!).created_at) + 15_000);
    // Job 3's deadline passes while its envelope is held by the dead A; then B comes up and takes it back.
    await waitUntil(async () => Date.now() > Date.parse((await later[0]!).created_at) + 15_100, 30_000, 'the deadline of job 3 to pass');
    await p.startWorker();

    const answers = await Promise.all(sent.slice(0, 3).map(async (r) => ({ status: (await r).status, job: (await (await r).json()) as Job })));
    const poll = { status: (await polled).status, job: (await (await polled).json()) as Job };
    const finals = new Map<number, Job>();
    for (let i = 0; i < n; i++) {
      const id = byI.get(i)!;
      finals.set(i, await waitUntil(async () => {
        const j = (await (await p.api(`/v1/jobs/${id}`)).json()) as Job;
        return isEnded(j.status) ? j : undefined;
      }, 60_000, `job ${i} to end`));
    }
    answers.forEach((x, i) => {
      expect(x.status, `wait ${i}`).to.equal(200);
      expect(x.job, `wait ${i} answers its own final job`).to.deep.equal(finals.get(i));
    });
    expect(poll.status).to.equal(200);
    expect(poll.job, 'the long poll answers the final job').to.deep.equal(finals.get(5));
    for (const [i, j] of finals) {
      if (i === 4) expect([j.status, j.error?.code, j.output], 'canceled while running').to.deep.equal(['canceled', 'canceled', null]);
      else expect([i, j.status, j.error], `job ${i}`).to.deep.equal([i, 'succeeded', null]);
    }
    // One job.completed per job, each the final job.
    await waitUntil(() => hooks.deliveries.filter((d) => d.event.type === 'job.completed').length >= n, 30_000, 'a job.completed per job');
    await waitUntil(async () => (await redis.llen(k.outbox)) === 0 && (await redis.llen(k.active)) === 0 && (await redis.llen(k.wait)) === 0, 20_000, 'the queue to empty');
    const completed = hooks.deliveries.filter((d) => d.event.type === 'job.completed');
    expect(completed.map((d) => d.event.data.id).sort()).to.deep.equal([...byI.values()].sort());
    for (const d of completed) expect(d.event.data).to.deep.equal(finals.get((d.event.data.metadata as { i: number }).i));
    const startedIds = hooks.deliveries.filter((d) => d.event.type === 'job.started').map((d) => String(d.headers['webhook-id']));
    expect(new Set(startedIds).size, 'at most one job.started event per job').to.be.at.most(n);
    expect(Number(await redis.get(k.queued))).to.equal(0);
    expect(await redis.hlen(k.index)).to.equal(0);
    expect(await redis.zcard(k.deadlines)).to.equal(0);
  });
});
