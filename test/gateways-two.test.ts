import http from 'node:http';
import net from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, isEnded, jobKeys, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { freePort } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { elapse, waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * Several gateways, and gateway faults, as a deployment runs them: any
 * gateway may answer any request, and a gateway may be killed or stopped at
 * any moment. What these check holds on the current code; no other test
 * covers it across gateways.
 */

const features = (x: number) => new Array(64).fill(x);
const jobBody = (x: number, extra: Record<string, unknown> = {}) => JSON.stringify({ model: 'mlp', version: '2', input: { features: features(x) }, ...extra });

function call(base: string, pathname: string, init: RequestInit = {}): Promise<Response> {
  return fetch(base + pathname, { ...init, headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
}

type JobEvent = { type: string; data: Job };

describe('gateways: two gateways, a long poll on the other one', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let second: Gateway;
  let a: string;
  let b: string;
  let hooks: WebhookReceiver<JobEvent>;
  let redis: Redis;

  before(async () => {
    hooks = await startWebhookReceiver<JobEvent>();
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', MAX_WAIT_SECONDS: '60' } });
    second = await createGateway(p.config, silentLogger);
    a = p.baseUrl;
    b = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    redis?.disconnect();
    await second?.close();
    await p?.close();
    await hooks?.close();
  });

  it('a job submitted on A and long-polled on B (and on A) wakes both as soon as a worker ends it, by event', async () => {
    const created = await call(a, '/v1/jobs', { method: 'POST', body: jobBody(0.3) });
    expect(created.status).to.equal(202);
    const { id } = (await created.json()) as Job;
    const stamp = async (r: Response) => ({ status: r.status, job: (await r.json()) as Job, at: performance.now() });
    const onB = call(b, `/v1/jobs/${id}`, { headers: { prefer: 'wait=30' } }).then(stamp);
    const onA = call(a, `/v1/jobs/${id}`, { headers: { prefer: 'wait=30' } }).then(stamp);
    const k = jobKeys(p.prefix, id);
    await waitUntil(
      async () => {
        const where = await redis.hget(k.index, id);
        const w = where ? ((await redis.hget(`${k.taggedPrefix}:${where}`, 'w')) ?? '') : '';
        return w.includes(second.waiters.channel) && w.includes(p.gateway.waiters.channel);
      },
      5000,
      'both long polls to be registered on the envelope',
    );
    await p.startWorker();
    await waitUntil(async () => (await redis.exists(k.record)) === 1, 15_000, 'the job to end');
    const ended = performance.now();
    const [rb, ra] = await Promise.all([onB, onA]);
    for (const r of [rb, ra]) {
      expect(r.status).to.equal(200);
      expect(r.job.status).to.equal('succeeded');
      expect(r.at - ended, 'ms from the end to the answer').to.be.below(3000);
    }
    expect(second.waiters.size + p.gateway.waiters.size).to.equal(0);
  });

});

describe('gateways: two gateways, one fleet', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let second: Gateway;
  let a: string;
  let b: string;
  let hooks: WebhookReceiver<JobEvent>;
  let redis: Redis;

  before(async () => {
    hooks = await startWebhookReceiver<JobEvent>();
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', MAX_WAIT_SECONDS: '60' } });
    second = await createGateway(p.config, silentLogger);
    a = p.baseUrl;
    b = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    redis?.disconnect();
    await second?.close();
    await p?.close();
    await hooks?.close();
  });

  it('cancel on B racing the worker’s end of jobs submitted (and long-polled) on A: one final state each, everywhere, and one job.completed', async () => {
    const n = 24;
    const base = hooks.deliveries.length;
    // Queued while no worker runs; each long-polled on A.
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await call(a, '/v1/jobs', { method: 'POST', body: jobBody(0.01 * i, { webhook: hooks.url }) });
      expect(r.status).to.equal(202);
      ids.push(((await r.json()) as Job).id);
    }
    const polls = ids.map((id) => call(a, `/v1/jobs/${id}`, { headers: { prefer: 'wait=20' } }).then(async (x) => ({ status: x.status, job: (await x.json()) as Job })));
    await waitUntil(() => p.gateway.waiters.size === n, 5000, 'the long polls to wait');
    // The worker starts, and the cancels on B come while it takes and runs them.
    const started = p.startWorker();
    const cancels = ids.map((id, i) =>
      elapse(i * 3, 'pacing the cancels across the worker’s start and first runs').then(() =>
        call(b, `/v1/jobs/${id}/cancel`, { method: 'POST' }).then(async (x) => ({ status: x.status, body: (await x.json()) as Job })),
      ),
    );
    await started;
    const [polled, canceled] = await Promise.all([Promise.all(polls), Promise.all(cancels)]);
    const finalOf = new Map<string, string>();
    for (const [i, id] of ids.entries()) {
      const poll = polled[i]!;
      const cancel = canceled[i]!;
      expect(poll.status).to.equal(200);
      const final = ((await (await call(a, `/v1/jobs/${id}`)).json()) as Job).status;
      finalOf.set(id, final);
      expect(isEnded(final), `${id} ${final}`).to.equal(true);
      if (cancel.status === 200) expect(final, id).to.equal('canceled');
      else {
        expect(cancel.status, JSON.stringify(cancel.body)).to.equal(409);
        expect(final, id).to.equal('succeeded');
      }
      // The long poll on A answered that same end.
      expect(poll.job.status, id).to.equal(final);
      const onB = ((await (await call(b, `/v1/jobs/${id}`)).json()) as Job).status;
      expect(onB, id).to.equal(final);
    }
    await waitUntil(() => hooks.deliveries.slice(base).filter((d) => d.event.type === 'job.completed').length >= n, 20_000, 'every job.completed');
    // No second event comes (a drain or a worker telling it again): the outbox is empty, and each id was told once.
    await waitUntil(async () => (await redis.llen(interactiveKeys(p.prefix, 'mlp', '2').outbox)) === 0, 5000, 'the outbox to drain');
    const completed = hooks.deliveries.slice(base).filter((d) => d.event.type === 'job.completed');
    const byJob = new Map<string, string[]>();
    for (const d of completed) byJob.set(d.event.data.id, [...(byJob.get(d.event.data.id) ?? []), d.event.data.status]);
    expect(byJob.size).to.equal(n);
    for (const [id, statuses] of byJob) expect(statuses, id).to.deep.equal([finalOf.get(id)]);
  });

  it('the same Idempotency-Key sent at once to both gateways makes one job; every answer is that job', async () => {
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => call(i % 2 ? a : b, '/v1/jobs', { method: 'POST', body: jobBody(0.4), headers: { 'idempotency-key': 'two-gw-burst' } })),
    );
    const jobs = await Promise.all(answers.map(async (r) => ({ status: r.status, replayed: r.headers.get('idempotent-replayed'), job: (await r.json()) as Job })));
    expect(new Set(jobs.map((j) => j.job.id)).size, JSON.stringify(jobs.map((j) => [j.status, j.job.id]))).to.equal(1);
    expect(jobs.filter((j) => j.replayed === null)).to.have.length(1);
    expect(jobs.filter((j) => j.replayed === 'true').every((j) => j.status === 200)).to.equal(true);
  });

  it('the job routes’ own dispatch and the Express routes answer the same request alike (case, trailing slash, absolute form, query, HEAD)', async () => {
    await p.startWorker();
    const created = await call(a, '/v1/jobs', { method: 'POST', body: jobBody(0.6) });
    const { id } = (await created.json()) as Job;
    await waitUntil(async () => (await redis.exists(jobKeys(p.prefix, id).record)) === 1, 10_000, 'the job to end');
    const port = Number(new URL(a).port);
    const raw = (request: string) =>
      new Promise<{ status: string; body: string; type: string | undefined }>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        let out = '';
        s.on('data', (d) => (out += d.toString()));
        s.on('error', reject);
        s.on('end', () => {
          const [head, ...rest] = out.split('\r\n\r\n');
          resolve({ status: head!.split('\r\n')[0]!, body: rest.join('\r\n\r\n'), type: /content-type: ([^\r]*)/i.exec(head!)?.[1] });
        });
        s.write(request);
      });
    const h = `Host: x\r\nAuthorization: Bearer ${TEST_KEY}\r\nConnection: close\r\n`;
    const reference = await raw(`GET /v1/jobs/${id} HTTP/1.1\r\n${h}\r\n`);
    expect(reference.status).to.equal('HTTP/1.1 200 OK');
    for (const target of [`/V1/JOBS/${id}`, `/v1/jobs/${id}/`, `http://x/v1/jobs/${id}`, `/v1/jobs/${id}?a=1`, `/v1/Jobs/${id}?`]) {
      expect(await raw(`GET ${target} HTTP/1.1\r\n${h}\r\n`), target).to.deep.equal(reference);
    }
    // A body on a GET is not read and changes nothing.
    expect(await raw(`GET /v1/jobs/${id} HTTP/1.1\r\n${h}Content-Length: 5\r\n\r\nhello`)).to.deep.equal(reference);
    const head = await raw(`HEAD /v1/jobs/${id} HTTP/1.1\r\n${h}\r\n`);
    expect(await raw(`HEAD /V1/jobs/${id} HTTP/1.1\r\n${h}\r\n`)).to.deep.equal(head);
    expect(head).to.deep.equal({ status: 'HTTP/1.1 200 OK', body: '', type: reference.type });
    // A cancel of the ended job: 409 whichever way it comes in.
    const conflict = await raw(`POST /v1/jobs/${id}/cancel HTTP/1.1\r\n${h}Content-Length: 0\r\n\r\n`);
    expect(conflict.status).to.equal('HTTP/1.1 409 Conflict');
    for (const target of [`/V1/jobs/${id}/CANCEL`, `/v1/jobs/${id}/cancel/`, `http://x/v1/jobs/${id}/cancel`]) {
      expect(await raw(`POST ${target} HTTP/1.1\r\n${h}Content-Length: 0\r\n\r\n`), target).to.deep.equal(conflict);
    }
    // OPTIONS is no route, either way in: 404 after the key check.
    for (const target of [`/v1/jobs/${id}`, `/V1/jobs/${id}`, '/v1/jobs']) {
      expect((await raw(`OPTIONS ${target} HTTP/1.1\r\n${h}\r\n`)).status, target).to.equal('HTTP/1.1 404 Not Found');
      expect((await raw(`OPTIONS ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)).status, target).to.equal('HTTP/1.1 401 Unauthorized');
    }
  });
});

describe('gateways: a spawned gateway killed or stopped', function () {
  this.timeout(90_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver<JobEvent>;
  let redis: Redis;
  let spawned: Spawned | undefined;

  before(async () => {
    hooks = await startWebhookReceiver<JobEvent>();
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  afterEach(() => spawned?.kill());
  after(async () => {
    spawned?.kill();
    redis?.disconnect();
    await p?.close();
    await hooks?.close();
  });

  async function spawnGateway(): Promise<{ gateway: Spawned; url: string; port: number }> {
    const port = await freePort();
    const gateway = new Spawned('start:gateway', {
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: p.prefix,
      MODEL_REPOSITORY: p.config.modelRepository,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      MAX_WAIT_SECONDS: '60',
    });
    spawned = gateway;
    await gateway.waitForLog('gateway listening', 30_000);
    return { gateway, url: `http://127.0.0.1:${port}`, port };
  }

  it('SIGTERM with long polls and Prefer: wait submits open: every one is answered (not reset), and it exits 0 in time', async () => {
    const { gateway, url, port } = await spawnGateway();
    // No worker: nothing ends these jobs; only the shutdown answers the waits.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await call(url, '/v1/jobs', { method: 'POST', body: jobBody(0.1 * i) });
      ids.push(((await r.json()) as Job).id);
    }
    const agent = new http.Agent({ keepAlive: true });
    const request = (method: string, path: string, body?: string) =>
      new Promise<{ status: number; job: Job }>((resolve, reject) => {
        const req = http.request({ agent, host: '127.0.0.1', port, method, path, headers: { authorization: `Bearer ${TEST_KEY}`, prefer: 'wait=30', 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, job: JSON.parse(text) as Job }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
      });
    const polls = ids.map((id) => request('GET', `/v1/jobs/${id}`));
    const waits = [0.7, 0.8].map((x) => request('POST', '/v1/jobs', jobBody(x)));
    const index = interactiveKeys(p.prefix, 'mlp', '2').index;
    await waitUntil(async () => {
      if ((await redis.hlen(index)) < 5) return false;
      for (const id of ids) {
        const k = jobKeys(p.prefix, id);
        const where = await redis.hget(k.index, id);
        if (!where || !((await redis.hget(`${k.taggedPrefix}:${where}`, 'w')) ?? '').includes(':gateway:')) return false;
      }
      return true;
    }, 10_000, 'every wait to be registered');
    const t0 = performance.now();
    gateway.signalGroup('SIGTERM');
    const answers = await Promise.allSettled([...polls, ...waits]);
    const exit = await gateway.exit(15_000);
    agent.destroy();
    const summary = answers.map((s) => (s.status === 'fulfilled' ? `${s.value.status} ${s.value.job.status}` : `reset: ${(s.reason as Error).message}`));
    expect(summary).to.deep.equal(['200 queued', '200 queued', '200 queued', '202 queued', '202 queued']);
    expect({ code: exit.code, signal: exit.signal }, gateway.tail()).to.deep.equal({ code: 0, signal: null });
    expect(exit.at - t0).to.be.below(10_000);
  });

  it('SIGKILLed (its whole process group) right after answering 202: every accepted job still runs, ends once, with one job.completed; a retry with its Idempotency-Key on another gateway replays it', async () => {
    const { gateway, url } = await spawnGateway();
    const base = hooks.deliveries.length;
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => call(url, '/v1/jobs', { method: 'POST', body: jobBody(0.05 * i, { webhook: hooks.url }), headers: { 'idempotency-key': `killed-${i}` } })),
    );
    gateway.signalGroup('SIGKILL');
    const accepted = await Promise.all(answers.map(async (r) => ({ status: r.status, job: (await r.json()) as Job })));
    expect(accepted.map((x) => x.status)).to.deep.equal(new Array(8).fill(202));
    await gateway.exit(10_000);
    // The fleet runs them without the gateway that took them; the client's retries go to another gateway.
    await p.startWorker();
    const retries = await Promise.all(
      accepted.map((_, i) => p.api('/v1/jobs', { method: 'POST', body: jobBody(0.05 * i, { webhook: hooks.url }), headers: { 'idempotency-key': `killed-${i}`, prefer: 'wait=20' } })),
    );
    for (const [i, r] of retries.entries()) {
      const job = (await r.json()) as Job;
      expect({ status: r.status, replayed: r.headers.get('idempotent-replayed'), id: job.id, job: job.status }).to.deep.equal({ status: 200, replayed: 'true', id: accepted[i]!.job.id, job: 'succeeded' });
    }
    await waitUntil(() => hooks.deliveries.slice(base).filter((d) => d.event.type === 'job.completed').length >= 8, 20_000, 'every job.completed');
    await waitUntil(async () => (await redis.llen(interactiveKeys(p.prefix, 'mlp', '2').outbox)) === 0, 5000, 'the outbox to drain');
    const told = hooks.deliveries.slice(base).filter((d) => d.event.type === 'job.completed').map((d) => d.event.data.id);
    expect([...told].sort()).to.deep.equal(accepted.map((x) => x.job.id).sort());
    // Nothing more was queued by the retries.
    expect(await redis.hlen(interactiveKeys(p.prefix, 'mlp', '2').index)).to.equal(0);
  });
});
