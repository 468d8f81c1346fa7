/**
 * @infer/sdk covers the whole public HTTP API (docs/api.md) that a client
 * calls: every `/v1` route of the OpenAPI document the gateway serves has an
 * SDK call, and the calls added for it (the `Cancel-After` deadline of
 * `jobs.create` and `jobs.run`; the webhook delivery log: `jobDeliveries`,
 * `batchDeliveries`, `delivery`, `resend`) work against a real in-process
 * gateway and worker (Redis, ONNX Runtime) with the test fixtures' models,
 * and local webhook receivers. The transport rules the new calls follow
 * (which headers, which retries) are checked against a stub fetch.
 */
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Webhook } from 'standardwebhooks';
import { interactiveQueue } from '@infer/contract';
import {
  InferApiError,
  InferClient,
  isWebhookDeliveryEnded,
  type Job,
  type WebhookDelivery,
  type WebhookEvent,
} from '@infer/sdk';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const features = (seed: number) => Array.from({ length: 64 }, (_, i) => Math.cos(i * 0.3 + seed));

/** The thrown InferApiError of `promise`, failing the test if it resolves or throws something else. */
async function apiError(promise: Promise<unknown>): Promise<InferApiError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(InferApiError);
    return err as InferApiError;
  }
  throw new Error('expected an InferApiError, but the call succeeded');
}

interface Received {
  headers: Record<string, string>;
  body: string;
}

interface Receiver {
  url: string;
  requests: Received[];
  /** From now on, requests are kept unanswered (the attempt stays in flight) until `release()`. */
  hold(): void;
  /** Answer the held requests (204), and answer the next ones at once. */
  release(): void;
  close(): Promise<void>;
}

/** A webhook endpoint on 127.0.0.1 answering 204, whose answers a test can hold back. */
async function receiver(): Promise<Receiver> {
  const requests: Received[] = [];
  let holding = false;
  const held: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      requests.push({ headers, body: Buffer.concat(chunks).toString() });
      if (holding) held.push(res);
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    requests,
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const res of held.splice(0)) res.writeHead(204).end();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The `METHOD /template` of the OpenAPI document that `method pathname` is a call of, or undefined. */
function routeOf(templates: readonly string[], method: string, pathname: string): string | undefined {
  return templates.find((t) => {
    const [m, p] = t.split(' ') as [string, string];
    const re = new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    return m === method && re.test(pathname);
  });
}

describe('sdk coverage: every /v1 route, Cancel-After and webhook deliveries (real gateway)', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let client: InferClient;
  let other: InferClient;
  const receivers: Receiver[] = [];
  const track = (r: Receiver) => (receivers.push(r), r);

  before(async () => {
    // Receivers on loopback: allowed only with WEBHOOK_ALLOW_PRIVATE.
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50,100' } });
    client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    other = new InferClient({ baseUrl: p.baseUrl, apiKey: OTHER_TENANT_KEY });
  });
  after(async () => {
    // Receivers first: a held request would otherwise keep the delivery worker's close waiting.
    for (const r of receivers) r.release();
    await Promise.all(receivers.map((r) => r.close()));
    await p?.close();
  });

  it('has an SDK call for every /v1 route of the OpenAPI document the gateway serves', async () => {
    const res = await fetch(`${p.baseUrl}/openapi.json`);
    expect(res.status).to.equal(200);
    const doc = (await res.json()) as { paths: Record<string, Record<string, unknown>> };
    const templates = Object.entries(doc.paths).flatMap(([path, ops]) =>
      path.startsWith('/v1/') ? Object.keys(ops).filter((m) => m !== 'parameters').map((m) => `${m.toUpperCase()} ${path}`) : [],
    );
    expect(templates.length).to.be.at.least(23);

    // Every SDK call, against a fetch that records the request and answers an empty success.
    const seen = new Set<string>();
    const unmatched: string[] = [];
    const recording: typeof fetch = async (input, init) => {
      const url = new URL(String(input));
      const method = init?.method ?? 'GET';
      const route = routeOf(templates, method, url.pathname);
      if (route) seen.add(route);
      else unmatched.push(`${method} ${url.pathname}`);
      const results = url.pathname.endsWith('/results');
      return new Response(results ? '' : '{"data":[],"has_more":false}', {
        status: 200,
        headers: { 'content-type': results ? 'application/x-ndjson' : 'application/json' },
      });
    };
    const c = new InferClient({ baseUrl: 'http://sdk.invalid', apiKey: 'k', adminKey: 'a', fetch: recording });
    const input = { features: [0] };
    await c.models.list();
    await c.models.get('m');
    await c.models.setRouting('m', null);
    await c.models.load('m', 1);
    await c.models.unload('m', 1);
    await c.models.startRollout('m', { version: 2, steps: [100], step_seconds: 1 });
    await c.models.rollouts('m');
    await c.models.rollout('m', 'ro_x');
    await c.models.cancelRollout('m', 'ro_x');
    await c.models.events('m');
    await c.jobs.create({ model: 'm', input });
    await c.jobs.get('j');
    await c.jobs.cancel('j');
    await c.batches.create({ model: 'm', items: [{ input }] });
    await c.batches.upload({ model: 'm' }, [{ input }]);
    await c.batches.list();
    await c.batches.get('b');
    for await (const line of c.batches.results('b')) expect.fail(`no lines expected, got ${JSON.stringify(line)}`);
    await c.batches.cancel('b');
    await c.webhooks.secret();
    await c.webhooks.jobDeliveries('j');
    await c.webhooks.batchDeliveries('b');
    await c.webhooks.delivery('msg_x');
    await c.webhooks.resend('msg_x');

    expect(unmatched, 'SDK calls to no route of the document').to.deep.equal([]);
    expect(templates.filter((t) => !seen.has(t)), 'routes without an SDK call').to.deep.equal([]);
  });

  describe('Cancel-After', () => {
    let redis: Redis;
    let queue: Queue;
    before(async () => {
      // mlp version 1's queue is paused (as from the dashboard): its worker is alive and sweeps the
      // queue's deadlines, but takes no job, so a job pinned to it stays queued until its deadline.
      redis = new Redis(TEST_REDIS_URL);
      const ref = interactiveQueue(p.prefix, 'mlp', '1');
      queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
      await queue.pause();
    });
    after(async () => {
      await queue?.resume();
      await queue?.close();
      redis?.disconnect();
    });

    const pinned = (seed: number) => ({ model: 'mlp', version: '1', input: { features: features(seed) } });
    const expectDeadlineExceeded = (job: Job) => {
      expect(job.status).to.equal('canceled');
      expect(job.error?.code).to.equal('deadline_exceeded');
      expect(job.started_at).to.equal(null);
      expect(job.output).to.equal(null);
    };

    it('jobs.create: a job still queued at its cancelAfter (seconds) ends canceled, deadline_exceeded, answering the wait', async () => {
      const t0 = Date.now();
      const job = await client.jobs.create(pinned(1), { cancelAfter: 0.5, wait: 20 });
      expectDeadlineExceeded(job);
      // Ended by its deadline, not by the wait running out.
      expect(Date.now() - t0).to.be.within(400, 15_000);
      expect(await client.jobs.get(job.id)).to.deep.equal(job);
    });

    it('jobs.run: the header text form ends the same way, and run resolves with the canceled job', async () => {
      const job = await client.jobs.run(pinned(2), { cancelAfter: '300ms', timeoutMs: 20_000 });
      expectDeadlineExceeded(job);
    });

    it('a job without cancelAfter on the same paused queue is not canceled by anyone else', async () => {
      const queued = await client.jobs.create(pinned(3));
      expect(queued.status).to.equal('queued');
      // Its neighbour's deadline passes (answered by the long poll), and this one is still queued.
      expectDeadlineExceeded(await client.jobs.create(pinned(4), { cancelAfter: 0.2, wait: 20 }));
      expect((await client.jobs.get(queued.id)).status).to.equal('queued');
      await client.jobs.cancel(queued.id);
    });

    it('a job that runs before its deadline succeeds; a malformed or out-of-range cancelAfter is 400 invalid_input', async () => {
      const job = await client.jobs.run({ model: 'mlp', version: '2', input: { features: features(5) } }, { cancelAfter: 60, timeoutMs: 20_000 });
      expect(job.status).to.equal('succeeded');
      expect(job.error).to.equal(null);
      for (const bad of ['soon', '25h', 0, 86_401]) {
        const err = await apiError(client.jobs.create(pinned(6), { cancelAfter: bad }));
        expect(err, `cancelAfter ${bad}`).to.include({ status: 400, code: 'invalid_input' });
        expect(err.detail).to.match(/Cancel-After/);
      }
    });
  });

  describe('webhook deliveries', () => {
    /** What `list` answers once it has `n` deliveries, every one ended. */
    const endedDeliveries = (list: () => Promise<WebhookDelivery[]>, n: number, what: string) =>
      waitUntil(
        async () => {
          const all = await list();
          return all.length === n && all.every(isWebhookDeliveryEnded) ? all : undefined;
        },
        15_000,
        what,
      );

    it("jobDeliveries lists a job's events after a real delivery; delivery() reads one by its webhook-id", async () => {
      const r = track(await receiver());
      const job = await client.jobs.run(
        { model: 'mlp', input: { features: features(10) }, webhook: r.url, webhook_events_filter: ['start', 'completed'] },
        { timeoutMs: 20_000 },
      );
      expect(job.status).to.equal('succeeded');
      const deliveries = await endedDeliveries(() => client.webhooks.jobDeliveries(job.id), 2, 'both events of the job delivered');

      expect(deliveries.map((d) => d.event_type).sort()).to.deep.equal(['job.completed', 'job.started']);
      const created = deliveries.map((d) => Date.parse(d.created_at));
      expect(created, 'oldest first').to.deep.equal([...created].sort((a, b) => a - b));
      for (const d of deliveries) {
        expect(d).to.deep.include({ object: 'webhook_delivery', url: r.url, subject: { object: 'job', id: job.id }, state: 'succeeded', attempt_count: 1, next_attempt_at: null });
        expect(d.id).to.match(/^msg_[0-9a-f]{32}$/);
        expect(d.attempts).to.have.length(1);
        expect(d.attempts[0]).to.include({ attempt: 1, status_code: 204, error: null, state: 'succeeded', trigger: 'scheduled' });
        // The same event by its id, as a receiver's operator would look it up.
        expect(await client.webhooks.delivery(d.id)).to.deep.equal(d);
      }
      // What the receiver got carries those ids, and bodies of the SDK's WebhookEvent type.
      expect(r.requests.map((q) => q.headers['webhook-id']).sort()).to.deep.equal(deliveries.map((d) => d.id).sort());
      const events = r.requests.map((q) => JSON.parse(q.body) as WebhookEvent);
      const completed = events.find((e) => e.type === 'job.completed');
      if (completed?.type !== 'job.completed') throw new Error('no job.completed body');
      expect(completed.data).to.deep.include({ id: job.id, status: 'succeeded' });
    });

    it('jobDeliveries is empty for a job without a webhook; unknown and foreign ids are 404s', async () => {
      const plain = await client.jobs.run({ model: 'mlp', input: { features: features(11) } }, { timeoutMs: 20_000 });
      expect(await client.webhooks.jobDeliveries(plain.id)).to.deep.equal([]);
      expect(await apiError(client.webhooks.jobDeliveries('aaaaaaaaAAAAAAAAAAAAAAAAAAAAAA'))).to.include({ status: 404, code: 'job_not_found' });
      expect(await apiError(other.webhooks.jobDeliveries(plain.id))).to.include({ status: 404, code: 'job_not_found' });
      expect(await apiError(client.webhooks.delivery(`msg_${'0'.repeat(32)}`))).to.include({ status: 404, code: 'not_found' });
      expect(await apiError(client.webhooks.resend(`msg_${'0'.repeat(32)}`))).to.include({ status: 404, code: 'not_found' });
    });

    it("batchDeliveries lists a batch's batch.completed event", async () => {
      const r = track(await receiver());
      const created = await client.batches.create({
        model: 'mlp',
        items: [
          { custom_id: 'a', input: { features: features(12) } },
          { custom_id: 'b', input: { features: features(13) } },
        ],
        webhook: r.url,
      });
      const ended = await client.batches.wait(created.id, { pollMs: 50, timeoutMs: 20_000 });
      expect(ended.status).to.equal('completed');
      const [delivery] = await endedDeliveries(() => client.webhooks.batchDeliveries(created.id), 1, 'the batch.completed event delivered');
      expect(delivery).to.deep.include({ event_type: 'batch.completed', subject: { object: 'batch', id: created.id }, state: 'succeeded', url: r.url });
      expect(await client.webhooks.delivery(delivery!.id)).to.deep.equal(delivery);
      const event = JSON.parse(r.requests[0]!.body) as WebhookEvent;
      if (event.type !== 'batch.completed') throw new Error(`expected batch.completed, got ${event.type}`);
      expect(event.data).to.deep.include({ id: created.id, status: 'completed' });
      expect(event.data.request_counts.succeeded).to.equal(2);

      expect(await apiError(client.webhooks.batchDeliveries('00000000-0000-4000-8000-000000000000'))).to.include({ status: 404, code: 'batch_not_found' });
      expect(await apiError(other.webhooks.batchDeliveries(created.id))).to.include({ status: 404, code: 'batch_not_found' });
      expect(await apiError(other.webhooks.delivery(delivery!.id))).to.include({ status: 404, code: 'not_found' });
    });

    it('resend sends an ended event once more (a manual attempt, same webhook-id, signed afresh); 409 while pending', async () => {
      const r = track(await receiver());
      const job = await client.jobs.run({ model: 'mlp', input: { features: features(14) }, webhook: r.url }, { timeoutMs: 20_000 });
      const [first] = await endedDeliveries(() => client.webhooks.jobDeliveries(job.id), 1, 'job.completed delivered');
      expect(first).to.include({ state: 'succeeded', attempt_count: 1 });
      expect(await apiError(other.webhooks.resend(first!.id))).to.include({ status: 404, code: 'not_found' });

      // The receiver holds its answer: the resent attempt stays in flight, so the delivery stays pending.
      r.hold();
      const resent = await client.webhooks.resend(first!.id);
      expect(resent).to.include({ id: first!.id, state: 'pending' });
      expect(await apiError(client.webhooks.resend(first!.id))).to.include({ status: 409, code: 'conflict' });
      await waitUntil(() => r.requests.length === 2, 10_000, 'the resent attempt to reach the receiver');
      expect((await client.webhooks.delivery(first!.id)).state).to.equal('pending');
      r.release();

      const done = await waitUntil(
        async () => {
          const d = await client.webhooks.delivery(first!.id);
          return isWebhookDeliveryEnded(d) ? d : undefined;
        },
        10_000,
        'the resent attempt to end',
      );
      expect(done).to.include({ state: 'succeeded', attempt_count: 2, next_attempt_at: null });
      expect(done.attempts.map((a) => [a.attempt, a.status_code, a.state, a.trigger])).to.deep.equal([
        [1, 204, 'succeeded', 'scheduled'],
        [2, 204, 'succeeded', 'manual'],
      ]);
      // Same id and body as the first attempt; the signature verifies with the tenant's secret.
      const [a, b] = r.requests as [Received, Received];
      expect(b.headers['webhook-id']).to.equal(first!.id);
      expect(b.body).to.equal(a.body);
      const verified = new Webhook(await client.webhooks.secret()).verify(b.body, b.headers) as WebhookEvent;
      expect(verified).to.deep.include({ type: 'job.completed' });
      expect(() => new Webhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).verify(b.body, b.headers)).to.throw();
    });
  });
});

describe('sdk coverage: transport of the new calls (stub fetch)', () => {
  type Call = { url: string; method: string; headers: Headers };
  function stub(responses: Array<() => Response>): { fetch: typeof fetch; calls: Call[] } {
    const calls: Call[] = [];
    const fakeFetch: typeof fetch = async (input, init) => {
      calls.push({ url: String(input), method: init?.method ?? 'GET', headers: new Headers(init?.headers) });
      const next = responses.shift();
      if (!next) throw new Error('no more stub responses');
      return next();
    };
    return { fetch: fakeFetch, calls };
  }
  const unavailable = () =>
    new Response(JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'd', code: 'unavailable' }), {
      status: 503,
      headers: { 'content-type': 'application/problem+json', 'retry-after': '0' },
    });
  const ok = (body: unknown) => () => new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
  const ended = { id: 'j', status: 'canceled' };

  it('sends Cancel-After: seconds as whole milliseconds, a string as it is, nothing when absent', async () => {
    const s = stub(Array.from({ length: 5 }, () => ok(ended)));
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: s.fetch });
    const body = { model: 'mlp', input: {} };
    await client.jobs.create(body, { cancelAfter: 1.5 });
    await client.jobs.create(body, { cancelAfter: '1h30m' });
    await client.jobs.create(body, { cancelAfter: 0.25 });
    await client.jobs.create(body);
    await client.jobs.run(body, { cancelAfter: 30 });
    expect(s.calls.map((c) => c.headers.get('cancel-after'))).to.deep.equal(['1500ms', '1h30m', '250ms', null, '30000ms']);
    expect(s.calls.every((c) => c.method === 'POST' && c.url === 'http://x.invalid/v1/jobs')).to.equal(true);
  });

  it('does not retry a job with a deadline unless it has an idempotency key', async () => {
    const once = stub([unavailable]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: once.fetch });
    expect(await apiError(client.jobs.create({ model: 'mlp', input: {} }, { cancelAfter: 5 }))).to.include({ status: 503 });
    expect(once.calls).to.have.length(1);
    const twice = stub([unavailable, ok(ended)]);
    const keyed = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: twice.fetch });
    await keyed.jobs.create({ model: 'mlp', input: {} }, { cancelAfter: 5, idempotencyKey: 'idem' });
    expect(twice.calls.map((c) => [c.headers.get('cancel-after'), c.headers.get('idempotency-key')])).to.deep.equal([
      ['5000ms', 'idem'],
      ['5000ms', 'idem'],
    ]);
  });

  it('reads deliveries with GETs that are retried on 503, to encoded paths, with the API key', async () => {
    const list = ok({ object: 'list', data: [{ id: 'msg_1' }] });
    const s = stub([unavailable, list, unavailable, list, unavailable, ok({ id: 'msg_1' })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid/base', apiKey: 'tenant', adminKey: 'admin', fetch: s.fetch });
    expect(await client.webhooks.jobDeliveries('j/1')).to.deep.equal([{ id: 'msg_1' }]);
    expect(await client.webhooks.batchDeliveries('b 1')).to.deep.equal([{ id: 'msg_1' }]);
    expect(await client.webhooks.delivery('msg_1')).to.deep.equal({ id: 'msg_1' });
    expect(s.calls.map((c) => [c.method, c.url, c.headers.get('authorization')])).to.deep.equal([
      ['GET', 'http://x.invalid/base/v1/jobs/j%2F1/webhook_deliveries', 'Bearer tenant'],
      ['GET', 'http://x.invalid/base/v1/jobs/j%2F1/webhook_deliveries', 'Bearer tenant'],
      ['GET', 'http://x.invalid/base/v1/batches/b%201/webhook_deliveries', 'Bearer tenant'],
      ['GET', 'http://x.invalid/base/v1/batches/b%201/webhook_deliveries', 'Bearer tenant'],
      ['GET', 'http://x.invalid/base/v1/webhook_deliveries/msg_1', 'Bearer tenant'],
      ['GET', 'http://x.invalid/base/v1/webhook_deliveries/msg_1', 'Bearer tenant'],
    ]);
  });

  it('never retries a resend: each one is another attempt at the receiver', async () => {
    const s = stub([unavailable]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: s.fetch });
    expect(await apiError(client.webhooks.resend('msg_1'))).to.include({ status: 503, code: 'unavailable', retryAfter: 0 });
    expect(s.calls.map((c) => [c.method, c.url])).to.deep.equal([['POST', 'http://x.invalid/v1/webhook_deliveries/msg_1/resend']]);
  });
});
