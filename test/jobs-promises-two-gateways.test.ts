import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, isEnded, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { EMBED_ROWS, embedSumReference } from '../scripts/build-models.js';
import { flatten } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * The per-job promises of interactive jobs that travel in
 * envelopes (docs/api.md "Jobs", docs/architecture.md "Envelopes").
 */

type JobEvent = { type: string; data: Job };

const idsOf = (seed: number): number[] => Array.from({ length: 4 }, (_, k) => (seed * 7 + k * 3) % EMBED_ROWS);
const poisonIds = (seed: number): number[] => [seed % EMBED_ROWS, EMBED_ROWS + 1 + (seed % 5), 1, 2];

function call(base: string, pathname: string, init: RequestInit & { key?: string } = {}): Promise<Response> {
  const { key = TEST_KEY, ...rest } = init;
  return fetch(base + pathname, { ...rest, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(rest.headers as Record<string, string>) } });
}

async function answer(res: Response): Promise<{ status: number; job: Job; replayed: string | null; text: string }> {
  const text = await res.text();
  return { status: res.status, job: JSON.parse(text) as Job, replayed: res.headers.get('idempotent-replayed'), text };
}

describe('jobs of one envelope ending in one batch, some failing, every client waiting (Prefer: wait), on two gateways', function () {
  this.timeout(90_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let second: Gateway;
  let b: string;
  let hooks: WebhookReceiver<JobEvent>;
  let redis: Redis;

  before(async () => {
    repo = tempModelRepo({ 'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') } });
    hooks = await startWebhookReceiver<JobEvent>();
    p = await startPlatform({ models: repo.root, worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100,200', MAX_WAIT_SECONDS: '60' } });
    second = await createGateway(p.config, silentLogger);
    b = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await second?.close();
    await p?.close();
    await hooks?.close();
    repo?.remove();
  });

  it('each waiting request gets its own job, ended, with its own output or its own inference_failed; one job.started and one job.completed each, matching GET', async () => {
    const n = 16;
    const poisoned = new Set([2, 7, 13]);
    const inputs = Array.from({ length: n }, (_, i) => (poisoned.has(i) ? poisonIds(i) : idsOf(i)));
    const waits = inputs.map((ids, i) =>
      call(i % 2 ? b : p.baseUrl, '/v1/jobs', {
        method: 'POST',
        headers: { prefer: 'wait=50' },
        body: JSON.stringify({ model: 'embed-sum', input: { ids }, metadata: { i }, webhook: hooks.url, webhook_events_filter: ['start', 'completed'] }),
      }).then(answer),
    );
    const k = interactiveKeys(p.prefix, 'embed-sum', '1');
    // Every job accepted before any runs, so they share micro-batches (two envelopes, one per gateway, or more).
    await waitUntil(async () => (await redis.hlen(k.index)) === n, 10_000, 'all jobs queued');
    await p.startWorker();
    const answers = await Promise.all(waits);
    const seenIds = new Set<string>();
    for (const [i, a] of answers.entries()) {
      expect(a.status, `job ${i}: ${a.text}`).to.equal(200);
      expect(a.job.metadata, `job ${i} answered with another job`).to.deep.equal({ i });
      expect(seenIds.has(a.job.id), 'two answers name one job').to.equal(false);
      seenIds.add(a.job.id);
      if (poisoned.has(i)) {
        expect([a.job.status, a.job.error?.code, a.job.output], `job ${i}`).to.deep.equal(['failed', 'inference_failed', null]);
      } else {
        expect(a.job.status, `job ${i}: ${JSON.stringify(a.job.error)}`).to.equal('succeeded');
        expect(flatten((a.job.output as Record<string, unknown>).vector), `job ${i}'s output`).to.deep.equal(embedSumReference(inputs[i]!));
        expect(a.job.metrics, `job ${i}'s metrics`).to.not.equal(null);
      }
      // The answer is the final job as GET reads it (from either gateway).
      const got = (await (await call(i % 2 ? p.baseUrl : b, `/v1/jobs/${a.job.id}`)).json()) as Job;
      expect(got, `job ${i}: GET differs from the waited answer`).to.deep.equal(a.job);
    }
    await waitUntil(() => hooks.deliveries.filter((d) => d.event.type === 'job.completed').length >= n, 20_000, 'a job.completed per job');
    await waitUntil(async () => (await redis.llen(k.outbox)) === 0, 10_000, 'the outbox to drain');
    const completed = hooks.deliveries.filter((d) => d.event.type === 'job.completed');
    expect(completed.map((d) => d.event.data.id).sort(), 'one job.completed per job').to.deep.equal([...seenIds].sort());
    for (const d of completed) {
      const a = answers.find((x) => x.job.id === d.event.data.id)!;
      expect(d.event.data, `job.completed of ${d.event.data.id}`).to.deep.equal(a.job);
    }
    await waitUntil(() => hooks.deliveries.filter((d) => d.event.type === 'job.started').length >= n, 20_000, 'a job.started per job');
    const started = hooks.deliveries.filter((d) => d.event.type === 'job.started');
    expect(new Set(started.map((d) => String(d.headers['webhook-id']))).size, 'job.started events').to.equal(n);
    expect(Number(await redis.get(k.queued))).to.equal(0);
    expect(await redis.hlen(k.index)).to.equal(0);
  });
});

describe('Idempotency-Key across two gateways and bodies', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let second: Gateway;
  let b: string;
  let redis: Redis;
  const mlp = (version: string, x: number) => JSON.stringify({ model: 'mlp', version, input: { features: new Array(64).fill(x) } });

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_WAIT_SECONDS: '60' } });
    second = await createGateway(p.config, silentLogger);
    b = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await second?.close();
    await p?.close();
  });

  it('same key with a different body (another version, other input) replays the first job and enqueues nothing (the body is not compared)', async () => {
    const first = await answer(await call(p.baseUrl, '/v1/jobs', { method: 'POST', body: mlp('1', 0.1), headers: { 'idempotency-key': 'diff-body' } }));
    expect(first.status).to.equal(202);
    const again = await answer(await call(b, '/v1/jobs', { method: 'POST', body: mlp('2', 0.9), headers: { 'idempotency-key': 'diff-body' } }));
    expect([again.status, again.replayed, again.job.id, again.job.version]).to.deep.equal([200, 'true', first.job.id, '1']);
    expect(await redis.hlen(interactiveKeys(p.prefix, 'mlp', '2').index), 'nothing enqueued for version 2').to.equal(0);
    // Another tenant's same key is its own job.
    const other = await answer(await call(b, '/v1/jobs', { method: 'POST', key: OTHER_TENANT_KEY, body: mlp('1', 0.1), headers: { 'idempotency-key': 'diff-body' } }));
    expect(other.status).to.equal(202);
    expect(other.job.id).to.not.equal(first.job.id);
    // And that tenant cannot read the first tenant's job through the shared key name.
    expect((await call(b, `/v1/jobs/${first.job.id}`, { key: OTHER_TENANT_KEY })).status).to.equal(404);
  });

  it('concurrent requests with one key and different bodies on two gateways, all waiting: one job, every answer that job with its output', async () => {
    const before = await redis.hlen(interactiveKeys(p.prefix, 'mlp', '2').index);
    const sent = Array.from({ length: 12 }, (_, i) =>
      call(i % 2 ? b : p.baseUrl, '/v1/jobs', { method: 'POST', body: mlp('2', i / 20), headers: { 'idempotency-key': 'burst-diff', prefer: 'wait=30' } }).then(answer),
    );
    await waitUntil(async () => (await redis.hlen(interactiveKeys(p.prefix, 'mlp', '2').index)) > before, 10_000, 'the one job to be queued');
    await p.startWorker();
    const answers = await Promise.all(sent);
    const ids = new Set(answers.map((a) => a.job.id));
    expect(ids.size, JSON.stringify(answers.map((a) => [a.status, a.job.id, a.job.status]))).to.equal(1);
    expect(answers.filter((a) => a.replayed === null)).to.have.length(1);
    for (const a of answers) {
      expect(a.status, a.text).to.equal(200);
      expect(a.job.status).to.equal('succeeded');
      expect(a.job.output).to.deep.equal(answers[0]!.job.output);
    }
    await p.closeWorker();
  });
});

describe('MAX_QUEUE_DEPTH in one queue from two gateways', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let second: Gateway;
  let b: string;
  let redis: Redis;
  const LIMIT = 30;
  const body = (x: number) => JSON.stringify({ model: 'mlp', version: '2', input: { features: new Array(64).fill(x) } });

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: String(LIMIT) } });
    second = await createGateway(p.config, silentLogger);
    b = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await second?.close();
    await p?.close();
  });

  it('is exact: a burst takes exactly the limit; cancels and deadlines give back exactly their room', async () => {
    const k = interactiveKeys(p.prefix, 'mlp', '2');
    const burst = await Promise.all(Array.from({ length: 90 }, (_, i) => call(i % 2 ? b : p.baseUrl, '/v1/jobs', { method: 'POST', body: body(i / 100) }).then(answer)));
    const accepted = burst.filter((a) => a.status === 202);
    expect(accepted.length + burst.filter((a) => a.status === 503).length).to.equal(90);
    expect(accepted.length, 'accepted in one queue').to.equal(LIMIT);
    expect(Number(await redis.get(k.queued))).to.equal(LIMIT);
    // Five canceled: exactly five fit again.
    for (const a of accepted.slice(0, 5)) expect((await call(b, `/v1/jobs/${a.job.id}/cancel`, { method: 'POST' })).status).to.equal(200);
    expect(Number(await redis.get(k.queued))).to.equal(LIMIT - 5);
    const again = await Promise.all(Array.from({ length: 20 }, (_, i) => call(i % 2 ? b : p.baseUrl, '/v1/jobs', { method: 'POST', body: body(i / 50), headers: { 'cancel-after': '300ms' } }).then(answer)));
    expect(again.filter((a) => a.status === 202).length, 'accepted after five cancels').to.equal(5);
    // Those five end deadline_exceeded (no worker: the gateways end them): five fit again.
    await waitUntil(async () => Number(await redis.get(k.queued)) === LIMIT - 5, 10_000, 'the deadlines to free their room');
    const third = await Promise.all(Array.from({ length: 20 }, (_, i) => call(i % 2 ? b : p.baseUrl, '/v1/jobs', { method: 'POST', body: body(i / 40) }).then(answer)));
    expect(third.filter((a) => a.status === 202).length, 'accepted after five deadlines').to.equal(5);
    expect(await redis.hlen(k.index)).to.equal(LIMIT);
  });
});
