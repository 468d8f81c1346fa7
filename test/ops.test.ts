import { expect } from 'chai';
import { expectProblem, expectRetryAfter, postJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

/** Resolve with `work`, or fail after `ms`. */
async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const jobBody = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });

describe('ops routes', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  it('/healthz and /readyz answer 200 without an API key', async () => {
    expect((await p.api('/healthz', { key: null })).status).to.equal(200);
    expect((await p.api('/readyz', { key: null })).status).to.equal(200);
  });

  it('/readyz is 503 while any one of the gateway\'s Redis connections is down (each reconnects on its own schedule), and jobs then fail fast', async () => {
    for (const [name, conn] of Object.entries(p.gateway.connections)) {
      const ended = new Promise((resolve) => conn.once('end', resolve));
      conn.disconnect();
      await ended;
      const ready = await p.api('/readyz', { key: null });
      expect({ name, status: ready.status }).to.deep.equal({ name, status: 503 });
      if (name === 'envelopes') await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: jobBody }), 503, 'unavailable');
      await conn.connect();
      expect({ name, status: (await p.api('/readyz', { key: null })).status }).to.deep.equal({ name, status: 200 });
    }
    expect((await p.api('/v1/jobs', { method: 'POST', body: jobBody })).status).to.equal(202);
  });

  it('/metrics is Prometheus text that counts requests', async () => {
    await p.api('/v1/models');
    const res = await p.api('/metrics', { key: null });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/plain/);
    const text = await res.text();
    expect(text).to.match(/^# HELP infer_http_request_duration_seconds /m);
    expect(text).to.match(/^# TYPE infer_http_request_duration_seconds histogram$/m);
    expect(text).to.match(/^infer_http_request_duration_seconds_count\{[^}]*route="\/v1\/models"[^}]*\} [1-9]/m);
  });

  it('/openapi.json is a JSON document with an openapi field', async () => {
    const res = await p.api('/openapi.json', { key: null });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
    const doc = (await res.json()) as { openapi?: unknown; paths?: Record<string, unknown> };
    expect(doc.openapi).to.be.a('string').and.match(/^3\.1/);
    expect(doc.paths).to.have.property('/v1/jobs');
  });

  it('answers an unknown route with 404 problem+json', async () => {
    await expectProblem(await p.api('/nope', { key: null }), 404, 'not_found');
    await expectProblem(await p.api('/v1/nope'), 404, 'not_found');
    await expectProblem(await p.api('/healthz', { method: 'POST', key: null }), 404, 'not_found');
    await expectProblem(await p.api('/v1/jobs', { method: 'DELETE' }), 404, 'not_found');
  });
});

describe('ops: Redis goes away', () => {
  let redis: OwnRedis;
  let p: TestPlatform;
  before(async () => {
    redis = await OwnRedis.start();
    // No worker: its blocking fetches would only add noise to an outage.
    p = await startPlatform({ redisUrl: redis.url, worker: false });
  });
  after(async () => {
    // Bring Redis back before closing, so every connection says goodbye properly.
    await redis.start();
    await p.close();
    await redis.stop();
  });

  it('answers /readyz 503 and POST /v1/jobs 503 unavailable with Retry-After, at once, then recovers', async () => {
    expect((await p.api('/readyz', { key: null })).status).to.equal(200);
    const { res: before, job } = await postJob(p, JSON.parse(jobBody));
    expect(before.status).to.equal(202);

    await redis.stop();

    const started = performance.now();
    const ready = await p.api('/readyz', { key: null });
    expect(ready.status).to.equal(503);
    expect(performance.now() - started, '/readyz answered within').to.be.below(3000);

    for (const [path, init] of [
      ['/v1/jobs', { method: 'POST', body: jobBody }],
      ['/v1/jobs', { method: 'POST', body: jobBody, headers: { prefer: 'wait=5' } }],
      [`/v1/jobs/${job.id}`, {}],
    ] as Array<[string, RequestInit]>) {
      const t0 = performance.now();
      const res = await p.api(path, init);
      const ms = performance.now() - t0;
      expectRetryAfter(res);
      await expectProblem(res, 503, 'unavailable');
      expect(ms, `${init.method ?? 'GET'} ${path} answered after ${Math.round(ms)} ms`).to.be.below(5000);
    }
    // The process itself is fine.
    expect((await p.api('/healthz', { key: null })).status).to.equal(200);

    await redis.start();
    await waitUntil(async () => (await p.api('/readyz', { key: null })).status === 200, 10_000, '/readyz to recover');
    // Each connection reconnects on its own backoff (up to 2 s), so submits recover a little after /readyz.
    await waitUntil(async () => (await p.api('/v1/jobs', { method: 'POST', body: jobBody })).status === 202, 10_000, 'submits to recover');
  });

  it('closes promptly while Redis is away', async () => {
    await redis.stop();
    await waitUntil(async () => (await p.api('/readyz', { key: null })).status === 503, 5000, '/readyz to notice');
    await within(p.gateway.close(), 5000, 'gateway.close() with Redis down');
  });
});
