import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Webhook } from 'standardwebhooks';
import { interactiveQueue, webhookQueue, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { eventIdFor, WebhookEvents, type WebhookDelivery } from '@infer/webhooks';
import { createWorker } from '../apps/worker/src/index.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';

/**
 * Webhooks end to end: a real gateway and worker on Redis, and receivers
 * that are plain HTTP servers on 127.0.0.1. The delivery tests run with
 * WEBHOOK_ALLOW_PRIVATE=true (their receivers are on loopback) and a
 * 50/100/200 ms retry schedule; the SSRF tests run without it.
 */

interface Received {
  headers: Record<string, string>;
  body: string;
  at: number;
}

type Answer = { status: number; headers?: Record<string, string> } | 'hang';

interface Receiver {
  url: string;
  requests: Received[];
  close(): Promise<void>;
}

/** A receiver answering its n-th request (1-based) as `answer` says; 'hang' reads the request and never answers. */
async function receiver(answer: (n: number) => Answer): Promise<Receiver> {
  const requests: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      requests.push({ headers, body: Buffer.concat(chunks).toString(), at: Date.now() });
      const a = answer(requests.length);
      if (a === 'hang') return;
      res.writeHead(a.status, a.headers).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const INPUT = { features: new Array(64).fill(0.5) };

async function submit(p: TestPlatform, extra: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return p.api('/v1/jobs', { method: 'POST', headers, body: JSON.stringify({ model: 'mlp', input: INPUT, ...extra }) });
}

async function submitOk(p: TestPlatform, extra: Record<string, unknown>): Promise<Job> {
  const res = await submit(p, extra);
  expect(res.status, await res.clone().text()).to.equal(202);
  return (await res.json()) as Job;
}

async function deliveriesOf(p: TestPlatform, jobId: string): Promise<WebhookDelivery[]> {
  const res = await p.api(`/v1/jobs/${jobId}/webhook_deliveries`);
  expect(res.status).to.equal(200);
  const body = (await res.json()) as { object: string; data: WebhookDelivery[] };
  expect(body.object).to.equal('list');
  return body.data;
}

/** Wait for the job's deliveries to include one in `state`. */
async function waitForDelivery(p: TestPlatform, jobId: string, state: WebhookDelivery['state'], timeoutMs = 10_000): Promise<WebhookDelivery> {
  return waitUntil(
    async () => (await deliveriesOf(p, jobId)).find((d) => d.state === state),
    timeoutMs,
    `a ${state} delivery of job ${jobId}`,
  );
}

async function secretOf(p: TestPlatform, key?: string): Promise<string> {
  const res = await p.api('/v1/webhooks/secret', key ? { key } : {});
  expect(res.status).to.equal(200);
  return ((await res.json()) as { secret: string }).secret;
}

/** Verify as a client would: the raw body and the three headers, with the tenant's secret. */
function verify(secret: string, r: Received): { type: string; timestamp: string; data: Job } {
  return new Webhook(secret).verify(r.body, r.headers) as { type: string; timestamp: string; data: Job };
}

describe('webhooks: delivery', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  const receivers: Receiver[] = [];
  const track = (r: Receiver) => (receivers.push(r), r);

  before(async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50,100,200' } });
  });
  after(async () => {
    // Receivers first: a hanging one would otherwise hold the delivery worker's close for its timeout.
    await Promise.all(receivers.map((r) => r.close()));
    await p.close();
  });

  it('serves one whsec_ secret per tenant, the same on every call, created once under concurrency', async () => {
    const [a, b, c] = await Promise.all([secretOf(p, OTHER_TENANT_KEY), secretOf(p, OTHER_TENANT_KEY), secretOf(p, OTHER_TENANT_KEY)]);
    expect(a).to.match(/^whsec_[A-Za-z0-9+/=]{40,}$/);
    expect(b).to.equal(a);
    expect(c).to.equal(a);
    expect(await secretOf(p)).to.not.equal(a);
    expect((await p.api('/v1/webhooks/secret', { key: null })).status).to.equal(401);
  });

  it('retries a failing receiver with one event id and a verifiable signature, logging every attempt', async () => {
    const r = track(await receiver((n) => ({ status: n <= 2 ? 500 : 200 })));
    const job = await submitOk(p, { webhook: r.url });
    const delivery = await waitForDelivery(p, job.id, 'succeeded');
    expect(r.requests).to.have.length(3);

    const secret = await secretOf(p);
    const ids = new Set(r.requests.map((q) => q.headers['webhook-id']));
    expect([...ids]).to.deep.equal([delivery.id]);
    for (const q of r.requests) {
      const event = verify(secret, q);
      expect(event.type).to.equal('job.completed');
      expect(event.data.id).to.equal(job.id);
      expect(event.data.status).to.equal('succeeded');
      expect(event.data.output).to.have.property('probabilities');
      expect(q.headers['webhook-timestamp']).to.match(/^\d+$/);
      expect(q.headers['webhook-signature']).to.match(/^v1,/);
    }
    // A wrong secret does not verify.
    const otherSecret = await secretOf(p, OTHER_TENANT_KEY);
    expect(() => verify(otherSecret, r.requests[0]!)).to.throw();

    expect(delivery).to.include({ object: 'webhook_delivery', event_type: 'job.completed', url: r.url, attempt_count: 3 });
    expect(delivery.subject).to.deep.equal({ object: 'job', id: job.id });
    expect(delivery.next_attempt_at).to.equal(null);
    expect(delivery.attempts.map((a) => [a.attempt, a.status_code, a.state, a.trigger])).to.deep.equal([
      [1, 500, 'failed', 'scheduled'],
      [2, 500, 'failed', 'scheduled'],
      [3, 200, 'succeeded', 'scheduled'],
    ]);
    expect(delivery.attempts[0]!.error).to.equal('HTTP 500');
    expect(delivery.attempts[2]!.error).to.equal(null);

    // The same delivery, by its id; another tenant sees neither it nor the job's list.
    const one = await p.api(`/v1/webhook_deliveries/${delivery.id}`);
    expect(one.status).to.equal(200);
    expect(((await one.json()) as WebhookDelivery).attempts).to.have.length(3);
    expect((await p.api(`/v1/webhook_deliveries/${delivery.id}`, { key: OTHER_TENANT_KEY })).status).to.equal(404);
    expect((await p.api(`/v1/jobs/${job.id}/webhook_deliveries`, { key: OTHER_TENANT_KEY })).status).to.equal(404);
  });

  it('stops at 410 Gone: one attempt, marked failed, nothing left scheduled', async () => {
    const r = track(await receiver(() => ({ status: 410 })));
    const job = await submitOk(p, { webhook: r.url });
    const delivery = await waitForDelivery(p, job.id, 'failed');
    await waitUntil(() => webhookQueueIdle(p.prefix), 5000, 'the webhook queue to be idle');
    expect(r.requests).to.have.length(1);
    expect(delivery.attempts).to.have.length(1);
    expect(delivery.attempts[0]).to.include({ status_code: 410, state: 'failed' });
    expect(delivery.next_attempt_at).to.equal(null);
  });

  it('does not follow redirects: a 3xx is a failed attempt, retried on schedule, then failed', async () => {
    const target = track(await receiver(() => ({ status: 200 })));
    const r = track(await receiver(() => ({ status: 302, headers: { location: target.url } })));
    const job = await submitOk(p, { webhook: r.url });
    const delivery = await waitForDelivery(p, job.id, 'failed');
    await waitUntil(() => webhookQueueIdle(p.prefix), 5000, 'the webhook queue to be idle');
    expect(target.requests).to.have.length(0);
    // The first attempt and one retry per delay of the schedule.
    expect(r.requests).to.have.length(4);
    expect(delivery.attempts.map((a) => a.status_code)).to.deep.equal([302, 302, 302, 302]);
    expect(delivery.attempts[0]!.error).to.match(/redirect \(302\).*not followed/);
  });

  it('honours Retry-After on 429 over a shorter scheduled delay', async () => {
    const r = track(await receiver((n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 })));
    const job = await submitOk(p, { webhook: r.url });
    const delivery = await waitForDelivery(p, job.id, 'succeeded');
    expect(r.requests).to.have.length(2);
    // The schedule says 50 ms; the receiver asked for 1 s.
    expect(r.requests[1]!.at - r.requests[0]!.at).to.be.at.least(950);
    expect(delivery.attempts.map((a) => a.status_code)).to.deep.equal([429, 200]);
  });

  it('resends an exhausted delivery with the same webhook-id, once the receiver is healthy', async () => {
    let healthy = false;
    const r = track(await receiver(() => ({ status: healthy ? 204 : 503 })));
    const job = await submitOk(p, { webhook: r.url });
    const failed = await waitForDelivery(p, job.id, 'failed');
    await waitUntil(() => webhookQueueIdle(p.prefix), 5000, 'the webhook queue to be idle');
    expect(failed.attempt_count).to.equal(4);

    // Tenant-scoped: another tenant's resend is a 404 and sends nothing.
    const foreign = await p.api(`/v1/webhook_deliveries/${failed.id}/resend`, { method: 'POST', key: OTHER_TENANT_KEY });
    expect(foreign.status).to.equal(404);
    expect((await p.api('/v1/webhook_deliveries/msg_nope/resend', { method: 'POST' })).status).to.equal(404);

    healthy = true;
    const res = await p.api(`/v1/webhook_deliveries/${failed.id}/resend`, { method: 'POST' });
    expect(res.status).to.equal(202);
    expect(((await res.json()) as WebhookDelivery).state).to.equal('pending');
    const done = await waitForDelivery(p, job.id, 'succeeded');
    expect(r.requests).to.have.length(5);
    expect(r.requests[4]!.headers['webhook-id']).to.equal(failed.id);
    verify(await secretOf(p), r.requests[4]!);
    expect(done.attempts[4]).to.include({ attempt: 5, status_code: 204, state: 'succeeded', trigger: 'manual' });
  });

  it('a resend that could not be queued leaves the event as it was: a delivered one still reads succeeded', async () => {
    const r = track(await receiver(() => ({ status: 204 })));
    const job = await submitOk(p, { webhook: r.url });
    const delivered = await waitForDelivery(p, job.id, 'succeeded');
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const events = new WebhookEvents({ connection: redis, prefix: p.prefix, resultTtlMs: p.config.resultTtlMs, retryDelaysMs: [50], logger: silentLogger });
    try {
      // Redis takes the resend's mark, then refuses to queue it.
      (events as unknown as { queue: Pick<Queue, 'add'> }).queue.add = () => Promise.reject(new Error('Connection is closed.'));
      let thrown: unknown;
      await events.resend('tenant-a', delivered.id).catch((err: unknown) => (thrown = err));
      expect(String(thrown)).to.match(/Connection is closed/);
      const after = (await deliveriesOf(p, job.id))[0]!;
      expect(after).to.include({ state: 'succeeded', attempt_count: 1 });
      expect(after.next_attempt_at).to.equal(null);
    } finally {
      await events.close();
      redis.disconnect();
    }
  });

  it('an event whose delivery could not be queued is queued by the next producer of it, and delivered once', async () => {
    const r = track(await receiver(() => ({ status: 204 })));
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const events = new WebhookEvents({ connection: redis, prefix: p.prefix, resultTtlMs: p.config.resultTtlMs, retryDelaysMs: [50], logger: silentLogger });
    const subject = { object: 'job', id: `job-${Date.now()}`, status: 'running' } as unknown as Job;
    const started = [{ id: eventIdFor('job.started', subject.id), event: { tenant: 'tenant-a', url: r.url, type: 'job.started' as const, data: subject } }];
    try {
      // The event is written, then Redis refuses to queue its delivery (a worker's take, say).
      const queue = (events as unknown as { queue: Pick<Queue, 'addBulk'> }).queue;
      const addBulk = queue.addBulk.bind(queue);
      queue.addBulk = () => Promise.reject(new Error('Connection is closed.'));
      let thrown: unknown;
      await events.ensureMany(started).catch((err: unknown) => (thrown = err));
      expect(String(thrown)).to.match(/Connection is closed/);
      expect((await events.log.list(subject, 'tenant-a')).map((d) => d.state)).to.deep.equal(['pending']);
      // The next producer of the same event (the envelope's next take) queues it: one delivery, one event.
      queue.addBulk = addBulk;
      await events.ensureMany(started);
      await waitUntil(async () => (await events.log.list(subject, 'tenant-a'))[0]?.state === 'succeeded', 10_000, 'the delivery');
      await events.ensureMany(started); // after delivery: nothing more
      expect(await events.log.list(subject, 'tenant-a')).to.have.length(1);
      expect(r.requests).to.have.length(1);
    } finally {
      await events.close();
      redis.disconnect();
    }
  });

  it('sends job.started and job.completed when the filter asks for both', async () => {
    const r = track(await receiver(() => ({ status: 200 })));
    const job = await submitOk(p, { webhook: r.url, webhook_events_filter: ['start', 'completed'] });
    await waitUntil(async () => (await deliveriesOf(p, job.id)).filter((d) => d.state === 'succeeded').length === 2, 10_000, 'two deliveries');
    const secret = await secretOf(p);
    const events = r.requests.map((q) => verify(secret, q));
    const started = events.find((e) => e.type === 'job.started');
    const completed = events.find((e) => e.type === 'job.completed');
    expect(started?.data.status).to.equal('running');
    expect(started?.data.started_at).to.be.a('string');
    expect(completed?.data.status).to.equal('succeeded');
    expect(new Set(r.requests.map((q) => q.headers['webhook-id'])).size).to.equal(2);
  });

  it('sends only job.completed by default', async () => {
    const r = track(await receiver(() => ({ status: 200 })));
    const job = await submitOk(p, { webhook: r.url });
    expect(job.webhook_events_filter).to.deep.equal(['completed']);
    await waitForDelivery(p, job.id, 'succeeded');
    await waitUntil(() => webhookQueueIdle(p.prefix), 5000, 'the webhook queue to be idle');
    expect(r.requests.map((q) => (JSON.parse(q.body) as { type: string }).type)).to.deep.equal(['job.completed']);
    expect(await deliveriesOf(p, job.id)).to.have.length(1);
  });

  it('sends batch.completed for a batch, listed under the batch', async () => {
    const r = track(await receiver(() => ({ status: 200 })));
    const res = await p.api('/v1/batches', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', items: [{ custom_id: 'a', input: INPUT }, { custom_id: 'b', input: INPUT }], webhook: r.url }),
    });
    expect(res.status).to.equal(202);
    const batch = (await res.json()) as { id: string };
    const delivery = await waitUntil(async () => {
      const list = await p.api(`/v1/batches/${batch.id}/webhook_deliveries`);
      expect(list.status).to.equal(200);
      return ((await list.json()) as { data: WebhookDelivery[] }).data.find((d) => d.state === 'succeeded');
    }, 10_000, 'the batch.completed delivery');
    expect(delivery.event_type).to.equal('batch.completed');
    expect(delivery.subject).to.deep.equal({ object: 'batch', id: batch.id });
    const event = new Webhook(await secretOf(p)).verify(r.requests[0]!.body, r.requests[0]!.headers) as {
      type: string;
      data: { object: string; id: string; status: string; request_counts: { succeeded: number } };
    };
    expect(event.type).to.equal('batch.completed');
    expect(event.data).to.include({ object: 'batch', id: batch.id, status: 'completed' });
    expect(event.data.request_counts.succeeded).to.equal(2);
    expect((await p.api(`/v1/batches/${batch.id}/webhook_deliveries`, { key: OTHER_TENANT_KEY })).status).to.equal(404);
  });

  it('lists no deliveries for a job without a webhook, and 404s an unknown job', async () => {
    const res = await submit(p, {}, { prefer: 'wait=10' });
    const job = (await res.json()) as Job;
    expect(await deliveriesOf(p, job.id)).to.deep.equal([]);
    expect((await p.api('/v1/jobs/00000000-0000-4000-8000-000000000000/webhook_deliveries')).status).to.equal(404);
  });

  it('never holds up inference: jobs complete promptly while every receiver hangs, and other receivers still get theirs', async () => {
    const hanging = track(await receiver(() => 'hang'));
    const started = Date.now();
    const jobs = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const res = await submit(p, { webhook: hanging.url }, { prefer: 'wait=10' });
        return { status: res.status, job: (await res.json()) as Job, at: Date.now() - started };
      }),
    );
    for (const { status, job } of jobs) {
      expect(status).to.equal(200);
      expect(job.status).to.equal('succeeded');
    }
    // Far inside one 10 s delivery timeout: nothing waited on a receiver.
    expect(Math.max(...jobs.map((j) => j.at))).to.be.below(5000);
    // The receiver holds its share of the worker's slots (20 of 200); its other events wait their turn.
    await waitUntil(() => hanging.requests.length >= 20, 5000, 'the hanging receiver to hold its share of the slots');

    // With those attempts hanging, another tenant's healthy receiver is served at once.
    const healthy = track(await receiver(() => ({ status: 200 })));
    const job = await submitOk(p, { webhook: healthy.url });
    await waitForDelivery(p, job.id, 'succeeded', 3000);
  });
});

describe('webhooks: job.completed for a canceled job', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let r: Receiver;

  before(async () => {
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50,100,200' } });
    r = await receiver(() => ({ status: 200 }));
  });
  after(async () => {
    await r.close();
    await p.close();
  });

  it('sends job.completed with status canceled', async () => {
    const job = await submitOk(p, { webhook: r.url });
    const res = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(res.status).to.equal(200);
    // The event is queued at cancel; the worker process delivers it.
    await p.startWorker();
    const delivery = await waitForDelivery(p, job.id, 'succeeded');
    expect(delivery.event_type).to.equal('job.completed');
    const event = verify(await secretOf(p), r.requests[0]!);
    expect(event.data).to.include({ id: job.id, status: 'canceled' });
    expect(event.data.error?.code).to.equal('canceled');
  });
});

describe('webhooks: SSRF guard (WEBHOOK_ALLOW_PRIVATE unset)', function () {
  this.timeout(30_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false, env: { WEBHOOK_RETRY_DELAYS_MS: '50,100,200' } });
  });
  after(async () => {
    await p.close();
  });

  const BAD = [
    'ftp://example.com/hook',
    'not a url',
    '/relative/hook',
    'http://127.0.0.1/hook',
    'http://127.1/hook',
    'http://2130706433/hook',
    'http://[::1]/hook',
    'http://[::ffff:127.0.0.1]/hook',
    'http://[::7f00:1]/hook',
    'http://[2002:7f00:1::1]/hook',
    'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook',
    'http://10.1.2.3/hook',
    'http://172.16.0.1/hook',
    'http://172.31.255.255/hook',
    'http://192.168.1.1/hook',
    'http://169.254.169.254/latest/meta-data',
    'http://[fe80::1]/hook',
    'http://[fd00::1]/hook',
    'http://224.0.0.1/hook',
    'http://0.0.0.0/hook',
    'http://localhost/hook',
    'http://LOCALHOST:8080/hook',
    'http://localhost./hook',
    'http://api.localhost/hook',
    'http://intranet/hook',
  ];

  it('refuses every bad webhook URL at submit with 422 webhook_url_not_allowed and enqueues nothing', async () => {
    for (const webhook of BAD) {
      const res = await submit(p, { webhook });
      expect(res.status, webhook).to.equal(422);
      expect(res.headers.get('content-type')).to.match(/application\/problem\+json/);
      expect(((await res.json()) as { code: string }).code, webhook).to.equal('webhook_url_not_allowed');
    }
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    try {
      const [, jobKeys] = await redis.scan('0', 'MATCH', `${p.prefix}:*:job*`, 'COUNT', 10_000);
      expect(jobKeys).to.deep.equal([]);
      for (const version of ['1', '2']) {
        const ref = interactiveQueue(p.prefix, 'mlp', version);
        const queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
        const counts = await queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
        await queue.close();
        expect(Object.values(counts).every((n) => n === 0), `queue mlp v${version}`).to.equal(true);
      }
    } finally {
      redis.disconnect();
    }
  });

  it('refuses, at delivery, a host name that resolves to a private address: one failed attempt, no request sent', async () => {
    const r = await receiver(() => ({ status: 200 }));
    const port = new URL(r.url).port;
    // A public-looking name passes the submit check; the injected resolver plays a DNS that points it at loopback.
    const job = await submitOk(p, { webhook: `http://hooks.example.test:${port}/hook` });
    const worker = await createWorker(p.config, silentLogger, {
      models: p.gateway.models,
      webhookResolve: async (hostname) => (hostname === 'hooks.example.test' ? [{ address: '127.0.0.1', family: 4 }] : []),
    });
    try {
      const delivery = await waitForDelivery(p, job.id, 'failed');
      await waitUntil(() => webhookQueueIdle(p.prefix), 5000, 'the webhook queue to be idle');
      expect(r.requests).to.have.length(0);
      expect(delivery.attempts).to.have.length(1);
      expect(delivery.attempts[0]!.status_code).to.equal(null);
      expect(delivery.attempts[0]!.error).to.match(/hooks\.example\.test resolves to 127\.0\.0\.1.*refused/);
    } finally {
      await worker.close();
      await r.close();
    }
  });
});

const typeOf = (r: Received) => (JSON.parse(r.body) as { type: string; data: Job }).type;
const dataOf = (r: Received) => (JSON.parse(r.body) as { type: string; data: Job }).data;

describe('webhooks: event filters, for a job canceled while queued and one that runs', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let r: Receiver;
  before(async () => {
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50,100,200' } });
    r = await receiver(() => ({ status: 200 }));
  });
  after(async () => {
    await r.close();
    await p.close();
  });

  it('a job canceled while queued gets job.completed (canceled) only; ["start"] alone gets nothing', async () => {
    const both = await submitOk(p, { webhook: r.url, webhook_events_filter: ['start', 'completed'] });
    const startOnly = await submitOk(p, { webhook: r.url, webhook_events_filter: ['start'] });
    for (const j of [both, startOnly]) expect((await p.api(`/v1/jobs/${j.id}/cancel`, { method: 'POST' })).status).to.equal(200);
    await p.startWorker();
    // A later job, run after the canceled ones were taken off the queue.
    const later = await submit(p, { webhook: r.url, webhook_events_filter: ['start'] }, { prefer: 'wait=10' });
    expect(((await later.json()) as Job).status).to.equal('succeeded');
    await waitUntil(async () => (await deliveriesOf(p, both.id)).some((d) => d.state === 'succeeded'), 10_000, 'job.completed of the canceled job');
    await waitUntil(() => r.requests.some((q) => typeOf(q) === 'job.started'), 10_000, 'the later job.started');
    await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'idle webhook queue');
    const forBoth = r.requests.filter((q) => dataOf(q).id === both.id).map(typeOf);
    const forStart = r.requests.filter((q) => dataOf(q).id === startOnly.id).map(typeOf);
    expect(forBoth).to.deep.equal(['job.completed']);
    expect(forStart).to.deep.equal([]);
    expect((await deliveriesOf(p, startOnly.id)).length).to.equal(0);
  });

  it('["start"] alone on a job that runs: job.started only', async () => {
    const r2 = await receiver(() => ({ status: 200 }));
    try {
      const res = await submit(p, { webhook: r2.url, webhook_events_filter: ['start'] }, { prefer: 'wait=10' });
      const job = (await res.json()) as Job;
      expect(job.status).to.equal('succeeded');
      await waitUntil(async () => (await deliveriesOf(p, job.id)).some((d) => d.state === 'succeeded'), 10_000, 'job.started');
      await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'idle webhook queue');
      expect(r2.requests.map(typeOf)).to.deep.equal(['job.started']);
      const ds = await deliveriesOf(p, job.id);
      expect(ds.map((d) => d.event_type)).to.deep.equal(['job.started']);
    } finally {
      await r2.close();
    }
  });
});

describe('webhooks: the retry schedule', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '200,1500' } });
  });
  after(async () => {
    await p.close();
  });

  it('waits the schedule\'s delays in order between attempts, next_attempt_at truthful', async () => {
    const r = await receiver((n) => ({ status: n <= 2 ? 500 : 200 }));
    try {
      const job = await submitOk(p, { webhook: r.url });
      const pending = await waitUntil(
        async () => (await deliveriesOf(p, job.id)).find((d) => d.attempt_count === 2 && d.state === 'pending'),
        10_000,
        'second attempt',
      );
      const second = r.requests[1]!.at;
      const due = Date.parse(pending.next_attempt_at!);
      expect(due - second).to.be.within(1300, 1700);
      const done = await waitUntil(async () => (await deliveriesOf(p, job.id)).find((d) => d.state === 'succeeded'), 10_000, 'success');
      expect(r.requests).to.have.length(3);
      const gap1 = r.requests[1]!.at - r.requests[0]!.at;
      const gap2 = r.requests[2]!.at - r.requests[1]!.at;
      // The delays come in order: the first (200 ms) is shorter than the second (1.5 s).
      expect(gap1, 'first delay').to.be.at.least(180);
      expect(gap1, 'first delay, shorter than the second').to.be.below(gap2);
      expect(gap2, 'second delay').to.be.at.least(1450);
      expect(done.attempts.map((a) => a.status_code)).to.deep.equal([500, 500, 200]);
      expect(done.attempt_count).to.equal(3);
      const secret = await secretOf(p);
      for (const q of r.requests) verify(secret, q);
    } finally {
      await r.close();
    }
  });
});

describe('webhooks: a worker shut down during the last scheduled attempt', function () {
  this.timeout(40_000);
  let p: TestPlatform;
  let r: Receiver;
  before(async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50' } });
    // 1st attempt: 500; 2nd (the last scheduled one): held until the worker goes; any later one: 200.
    r = await receiver((n) => (n === 1 ? { status: 500 } : n === 2 ? 'hang' : { status: 200 }));
  });
  after(async () => {
    await r.close();
    await p.close();
  });

  // The attempt cut short is not the receiver's failure: it does not use up the schedule, and the event is delivered.
  it('still delivers the event (at least once) to a receiver that answers 2xx once a worker is back', async () => {
    const job = await submitOk(p, { webhook: r.url });
    await waitUntil(() => r.requests.length >= 2, 10_000, 'the last scheduled attempt to be in flight');
    // A deploy: the worker goes (its attempt in flight is cut short) and another comes.
    await p.worker!.close();
    const next = await createWorker(p.config, silentLogger, { models: p.gateway.models });
    try {
      const d = await waitUntil(async () => (await deliveriesOf(p, job.id)).find((x) => x.state !== 'pending'), 10_000, 'the delivery to end');
      await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'idle');
      expect(d.state, JSON.stringify(d.attempts.map((a) => [a.attempt, a.status_code, a.error]))).to.equal('succeeded');
    } finally {
      await next.close();
    }
  });
});

describe('webhooks: one receiver that hangs, under a burst of its events', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let hang: Receiver;
  let ok: Receiver;
  before(async () => {
    // A long retry delay: the hanging receiver's timed-out attempts do not come back during the test.
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '60000' } });
    [hang, ok] = await Promise.all([receiver(() => 'hang'), receiver(() => ({ status: 200 }))]);
  });
  after(async () => {
    await Promise.all([hang.close(), ok.close()]);
    await p.close();
  });

  // The worker has 200 delivery slots; one receiver may hold a tenth of them, the rest of its events wait their turn.
  it("does not hold up another tenant's deliveries", async () => {
    await Promise.all(Array.from({ length: 200 }, () => submitOk(p, { webhook: hang.url })));
    const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const queue = new Queue(webhookQueue(p.prefix).name, { connection, prefix: webhookQueue(p.prefix).prefix });
    try {
      await waitUntil(
        async () => hang.requests.length >= 20 && (await queue.getJobCounts('waiting', 'prioritized')).waiting === 0,
        20_000,
        "the hanging receiver's events all taken, its attempts in flight",
      );
    } finally {
      await queue.close();
      connection.disconnect();
    }
    expect(hang.requests.length, 'attempts the hanging receiver holds').to.be.at.most(20);
    const started = Date.now();
    const res = await p.api('/v1/jobs', { method: 'POST', key: OTHER_TENANT_KEY, body: JSON.stringify({ model: 'mlp', input: INPUT, webhook: ok.url }) });
    expect(res.status).to.equal(202);
    await waitUntil(() => ok.requests.length > 0, 8_000, "the other tenant's delivery");
    // Held up behind the hanging attempts, it would wait out their 10 s timeout.
    expect(Date.now() - started, "ms before the other tenant's event was delivered").to.be.below(6_000);
  });
});
