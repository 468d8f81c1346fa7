import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import type { Batch, Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The webhook contract (docs/api.md, Webhooks): the body is
 * `{"type", "timestamp", "data": Job | Batch}`, `data` being the Job or Batch
 * itself; `job.completed` is sent for ANY ended status, a job canceled at its
 * Cancel-After deadline included; signed per Standard Webhooks with
 * `webhook-timestamp` in unix seconds.
 */

interface Received {
  headers: Record<string, string>;
  body: string;
}

interface Event<T> {
  type: string;
  timestamp: string;
  data: T;
}

const UTC_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const features = new Array(64).fill(0.5);

describe('webhook events carry the Job and Batch as the API gives them', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let server: http.Server;
  let url: string;
  const received: Received[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
        received.push({ headers, body: Buffer.concat(chunks).toString() });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50,100' } });
  });
  after(async () => {
    await p?.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function secret(): Promise<string> {
    return ((await (await p.api('/v1/webhooks/secret')).json()) as { secret: string }).secret;
  }

  /** The verified events about `id`, as a receiver using a Standard Webhooks library reads them. */
  async function eventsOf<T extends { id: string }>(id: string): Promise<Array<Event<T> & { headers: Record<string, string> }>> {
    const wh = new Webhook(await secret());
    return received
      .map((r) => ({ ...(wh.verify(r.body, r.headers) as Event<T>), headers: r.headers }))
      .filter((e) => e.data.id === id);
  }

  it('job.completed carries the Job exactly as GET /v1/jobs/{id} answers it; job.started the Job as it was then', async () => {
    const res = await p.api('/v1/jobs', {
      method: 'POST',
      headers: { prefer: 'wait=10' },
      body: JSON.stringify({ model: 'mlp', input: { features }, webhook: url, webhook_events_filter: ['start', 'completed'], metadata: { order: 'o-1' } }),
    });
    expect(res.status).to.equal(200);
    const job = (await res.json()) as Job;
    const events = await waitUntil(async () => {
      const e = await eventsOf<Job>(job.id);
      return e.length >= 2 ? e : null;
    }, 10_000, 'job.started and job.completed');
    const completed = events.find((e) => e.type === 'job.completed')!;
    const started = events.find((e) => e.type === 'job.started')!;
    const text = await (await p.api(`/v1/jobs/${job.id}`)).text();
    const got = JSON.parse(text) as Job;
    expect(completed.data).to.deep.equal(got);
    // Byte for byte: the body's data is the Job's text as GET prints it (64-bit integers keep every digit).
    const raw = received.find((r) => r.body.startsWith('{"type":"job.completed"') && r.body.includes(job.id))!.body;
    expect(raw.slice(raw.indexOf(',"data":') + ',"data":'.length, -1)).to.equal(text);
    // job.started: the same Job, running: every field there, the ones that come with the end still null.
    expect(Object.keys(started.data)).to.deep.equal(Object.keys(got));
    expect(started.data).to.deep.include({ id: job.id, status: 'running', completed_at: null, output: null, error: null, metrics: null, metadata: { order: 'o-1' } });
    expect(started.data.started_at).to.equal(got.started_at);
    for (const e of events) {
      expect(e.timestamp, 'the event body’s timestamp').to.match(UTC_TIME);
      expect(e.headers['webhook-timestamp'], 'webhook-timestamp in unix seconds').to.match(/^\d{10}$/);
      expect(Math.abs(Number(e.headers['webhook-timestamp']) - Date.now() / 1000)).to.be.lessThan(300);
    }
  });

  it('batch.completed carries the Batch exactly as GET /v1/batches/{id} answers it once ended', async () => {
    const res = await p.api('/v1/batches', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', items: [{ custom_id: 'a', input: { features } }, { input: { features: [1] } }], webhook: url, metadata: { run: 7 } }),
    });
    expect(res.status).to.equal(202);
    const batch = (await res.json()) as Batch;
    const [event] = await waitUntil(async () => {
      const e = await eventsOf<Batch>(batch.id);
      return e.length ? e : null;
    }, 15_000, 'batch.completed');
    expect(event!.type).to.equal('batch.completed');
    const got = (await (await p.api(`/v1/batches/${batch.id}`)).json()) as Batch;
    expect(got.status).to.equal('completed');
    expect(event!.data).to.deep.equal(got);
  });

  it('job.completed is sent for a job that ended canceled at its Cancel-After deadline (deadline_exceeded)', async () => {
    // No worker while the deadline passes: the job ends queued, by the gateways; then one comes back to deliver.
    await p.closeWorker();
    let job: Job;
    try {
      const res = await p.api('/v1/jobs', {
        method: 'POST',
        headers: { 'cancel-after': '200ms', prefer: 'wait=5' },
        body: JSON.stringify({ model: 'mlp', input: { features }, webhook: url }),
      });
      job = (await res.json()) as Job;
      expect(res.status).to.equal(200);
      expect(job.status).to.equal('canceled');
      expect(job.error?.code).to.equal('deadline_exceeded');
    } finally {
      await p.startWorker();
    }
    const [event] = await waitUntil(async () => {
      const e = await eventsOf<Job>(job.id);
      return e.length ? e : null;
    }, 15_000, 'job.completed of the job past its deadline');
    expect(event!.type).to.equal('job.completed');
    expect(event!.data).to.deep.include({ id: job.id, status: 'canceled' });
    expect(event!.data.error?.code).to.equal('deadline_exceeded');
  });
});
