import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { postJob, pollJob } from './helpers/jobs.js';
import { SHIPPED_MODELS, TEST_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { mlpFeatures } from './helpers/batches.js';

/**
 * docs/api.md, webhook delivery: "An attempt cut short because its worker is shutting down (a deploy) is
 * logged with the error `aborted: the worker is shutting down` and runs again about a second later, on
 * whichever worker takes it; it does not use up one of the 7." README: a SIGTERMed worker exits 0 within 30 s.
 *
 * A worker (its own process group) has job.completed deliveries in flight to a receiver that does not answer;
 * SIGTERM to the group. Each delivery must be cut short and rescheduled (not lost, not ended failed), the worker
 * must exit 0 well within its bound, and the next worker must deliver each event once more, and only once.
 */

type JobEvent = { type: string; data: Job };
interface Delivery {
  id: string;
  state: string;
  attempt_count: number;
  next_attempt_at: string | null;
  attempts: Array<{ attempt: number; error: string | null; state: string; status_code: number | null }>;
}

const JOBS = 5;

describe('lifecycle: SIGTERM to a worker with webhook deliveries in flight to a slow receiver', function () {
  this.timeout(120_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver<JobEvent>;
  let worker: Spawned | undefined;

  before(async () => {
    // The first JOBS requests hang (a receiver stuck on slow work); later ones are answered 204 at once.
    hooks = await startWebhookReceiver<JobEvent>((n) => (n <= JOBS ? 'hang' : 204));
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WORKER_LOCK_MS: '2000', WEBHOOK_RETRY_DELAYS_MS: '60000' } });
  });
  after(async () => {
    worker?.kill();
    await worker?.exited;
    await p?.close();
    await hooks?.close();
  });

  const deliveriesOf = async (id: string): Promise<Delivery[]> => {
    const res = await p.api(`/v1/jobs/${id}/webhook_deliveries`);
    expect(res.status).to.equal(200);
    return ((await res.json()) as { data: Delivery[] }).data;
  };

  it('cuts each attempt short, reschedules it, exits 0 in time; the next worker delivers each event once more', async () => {
    worker = new Spawned('start:worker', {
      REDIS_URL: p.config.redisUrl,
      QUEUE_PREFIX: p.prefix,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      WORKER_METRICS_PORT: '0',
      WORKER_LOCK_MS: '2000',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_DELAYS_MS: '60000',
    });
    await worker.waitForLog('worker started', 60_000);
    await waitUntil(async () => {
      await p.gateway.catalog.refresh();
      const res = await p.api('/v1/models/mlp');
      const m = (await res.json()) as { versions_detail: Array<{ state: string }> };
      return m.versions_detail.some((d) => d.state === 'ready');
    }, 20_000, 'the gateway to see the worker');

    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) ids.push((await postJob(p, { model: 'mlp', input: { features: mlpFeatures(i) }, webhook: hooks.url })).job.id);
    for (const id of ids) expect((await pollJob(p, id, 20_000)).status).to.equal('succeeded');
    // Every job.completed is in flight: the receiver has them all and answers none.
    await waitUntil(() => hooks.deliveries.length >= JOBS, 20_000, 'every delivery in flight');

    const t0 = performance.now();
    worker.signalGroup('SIGTERM');
    const exit = await worker.exit(35_000);
    expect({ code: exit.code, signal: exit.signal }, worker.tail()).to.deep.equal({ code: 0, signal: null });
    // The attempts are cut short at once, not waited out for their 10 s timeout.
    expect(exit.at - t0, 'ms from SIGTERM to the exit').to.be.below(8_000);
    expect(worker.logged('webhook delivery run failed'), worker.tail()).to.have.length(0);

    for (const id of ids) {
      const [d, ...more] = await deliveriesOf(id);
      expect(more, `job ${id}: one event`).to.have.length(0);
      expect(d!.state, `job ${id}: cut short is still to run`).to.equal('pending');
      expect(d!.attempts.map((x) => x.error)).to.deep.equal(['aborted: the worker is shutting down']);
      expect(d!.next_attempt_at, 'about a second later, not the schedule\'s 60 s').to.not.equal(null);
      expect(Date.parse(d!.next_attempt_at!) - Date.now()).to.be.below(5_000);
    }

    // The next worker (here, in-process) delivers each once more; the receiver answers now.
    await p.startWorker();
    await waitUntil(async () => (await Promise.all(ids.map(deliveriesOf))).every((ds) => ds[0]?.state === 'succeeded'), 30_000, 'every event delivered');
    await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'nothing more on the webhook queue');
    for (const id of ids) {
      const [d] = await deliveriesOf(id);
      expect(d!.attempt_count).to.equal(2);
      expect(d!.attempts.map((x) => x.state)).to.deep.equal(['failed', 'succeeded']);
    }
    const byEvent = new Map<string, number>();
    for (const d of hooks.deliveries) byEvent.set(String(d.headers['webhook-id']), (byEvent.get(String(d.headers['webhook-id'])) ?? 0) + 1);
    expect(byEvent.size, 'one event per job').to.equal(JOBS);
    expect([...byEvent.values()], 'each event: the attempt cut short and the one answered').to.deep.equal(Array(JOBS).fill(2));
    expect(hooks.deliveries.every((d) => d.event.type === 'job.completed')).to.equal(true);
  });
});
