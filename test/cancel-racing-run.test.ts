import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, isEnded, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import type { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { startWorkerProcess } from './helpers/worker-process.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * Cancel one job of an envelope at every point of its life
 * (queued, taken, running, ending, ended) on a real worker process, with
 * long polls on another gateway and webhooks: docs/api.md "POST
 * /v1/jobs/{id}/cancel" (a queued job never runs, a running job's output is
 * discarded; an ended one is 409) and "every job keeps its own id, status,
 * output" (architecture.md, Envelopes).
 */

type JobEvent = { type: string; data: Job };
const LEN = 1024;

function call(base: string, pathname: string, init: RequestInit = {}): Promise<Response> {
  return fetch(base + pathname, { ...init, headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
}
async function answer(res: Response): Promise<{ status: number; job: Job; text: string }> {
  const text = await res.text();
  return { status: res.status, job: JSON.parse(text) as Job, text };
}

describe('cancel of one job of an envelope racing its take, run and end (worker process)', function () {
  this.timeout(240_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let second: Gateway;
  let b: string;
  let hooks: WebhookReceiver<JobEvent>;
  let redis: Redis;
  let w: Spawned | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(8), config: { max_batch_size: 8, max_delay_ms: 1 } } });
    hooks = await startWebhookReceiver<JobEvent>();
    p = await startPlatform({ models: repo.root, worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100,200', MAX_WAIT_SECONDS: '60' } });
    second = await createGateway(p.config, silentLogger);
    b = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    redis = new Redis(p.config.redisUrl);
    w = await startWorkerProcess(p, 'cubic', { env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100,200' }, gateways: [second] });
  });
  after(async () => {
    w?.kill();
    await w?.exited;
    redis?.disconnect();
    await second?.close();
    await p?.close();
    await hooks?.close();
    repo?.remove();
  });

  it('a 200 cancel means canceled everywhere (long poll, GET, job.completed), a 409 that it ended otherwise; every other job of its envelope succeeds', async () => {
    const rounds = 14;
    const perRound = 6;
    const all: Array<{ id: string; target: boolean; cancel?: number; waited: Promise<Awaited<ReturnType<typeof answer>>> }> = [];
    for (let r = 0; r < rounds; r++) {
      const created = await Promise.all(
        Array.from({ length: perRound }, (_, i) =>
          call(p.baseUrl, '/v1/jobs', {
            method: 'POST',
            body: JSON.stringify({ model: 'cubic', input: { x: new Array(LEN).fill(0) }, metadata: { r, i }, webhook: hooks.url, webhook_events_filter: ['start', 'completed'] }),
          }).then(answer),
        ),
      );
      created.forEach((c) => expect(c.status, c.text).to.equal(202));
      const target = r % perRound;
      const waits = created.map((c) => call(b, `/v1/jobs/${c.job.id}`, { headers: { prefer: 'wait=50' } }).then(answer));
      // From at once to past the end of the envelope's run (~1 s).
      const delay = Math.round((r / (rounds - 1)) * 1400);
      if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
      const cancel = (await call(r % 2 ? b : p.baseUrl, `/v1/jobs/${created[target]!.job.id}/cancel`, { method: 'POST' })).status;
      created.forEach((c, i) => all.push({ id: c.job.id, target: i === target, ...(i === target ? { cancel } : {}), waited: waits[i]! }));
      await Promise.all(waits);
    }
    const finals = new Map<string, Job>();
    for (const x of all) {
      const a = await x.waited;
      expect(a.status, a.text).to.equal(200);
      const got = (await (await call(p.baseUrl, `/v1/jobs/${x.id}`)).json()) as Job;
      expect(isEnded(got.status), `${x.id} ended`).to.equal(true);
      expect(a.job, 'the long poll answers the final job').to.deep.equal(got);
      finals.set(x.id, got);
      if (!x.target) expect(got.status, `a job beside the canceled one: ${JSON.stringify(got.error)}`).to.equal('succeeded');
      else if (x.cancel === 200) expect([got.status, got.error?.code, got.output]).to.deep.equal(['canceled', 'canceled', null]);
      else expect([x.cancel, got.status]).to.deep.equal([409, 'succeeded']);
    }
    const cancels = all.filter((x) => x.cancel !== undefined).map((x) => x.cancel);
    await waitUntil(() => hooks.deliveries.filter((d) => d.event.type === 'job.completed').length >= all.length, 30_000, 'a job.completed per job');
    await waitUntil(async () => (await redis.llen(interactiveKeys(p.prefix, 'cubic', '1').outbox)) === 0, 10_000, 'the outbox to drain');
    const completed = hooks.deliveries.filter((d) => d.event.type === 'job.completed');
    expect(completed.length, 'job.completed deliveries').to.equal(all.length);
    for (const d of completed) expect(d.event.data, d.event.data.id).to.deep.equal(finals.get(d.event.data.id));
    // A job.started means it was taken: never for a job canceled before its take.
    for (const d of hooks.deliveries.filter((x) => x.event.type === 'job.started')) {
      const f = finals.get(d.event.data.id)!;
      if (f.status === 'canceled') expect(f.started_at, `job.started for ${f.id}, which ended canceled as never started`).to.not.equal(null);
    }
    expect(Number(await redis.get(interactiveKeys(p.prefix, 'cubic', '1').queued))).to.equal(0);
    // eslint-disable-next-line no-console
    console.log(`      cancels: ${cancels.filter((c) => c === 200).length} won, ${cancels.filter((c) => c === 409).length} lost`);
  });
});
