import { expect } from 'chai';
import type { Batch, Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

const ADMIN = 'admin-secret-key';
const features = new Array(64).fill(0.5);
const body = JSON.stringify({ model: 'mlp', input: { features } });

interface Answer { status: number; type: string; retryAfter: string | null; ms: number; text: string }

/** Every route that reads or writes Redis, beyond those test/redis-restart.test.ts probes. */
function routes(jobId: string, batchId: string, eventId: string): Array<[string, string, RequestInit & { key?: string | null }]> {
  const admin = { authorization: `Bearer ${ADMIN}` };
  return [
    ['cancel', `/v1/jobs/${jobId}/cancel`, { method: 'POST' }],
    ['submit idempotent', '/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': 'k-' + jobId } }],
    ['submit cancel-after', '/v1/jobs', { method: 'POST', body, headers: { 'cancel-after': '30s' } }],
    ['batch json', '/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'mlp', items: [{ custom_id: 'a', input: { features } }] }) }],
    ['batch get', `/v1/batches/${batchId}`, {}],
    ['batch results', `/v1/batches/${batchId}/results`, {}],
    ['batch cancel', `/v1/batches/${batchId}/cancel`, { method: 'POST' }],
    ['webhook secret', '/v1/webhooks/secret', {}],
    ['job deliveries', `/v1/jobs/${jobId}/webhook_deliveries`, {}],
    ['delivery', `/v1/webhook_deliveries/${eventId}`, {}],
    ['resend', `/v1/webhook_deliveries/${eventId}/resend`, { method: 'POST' }],
    ['routing', '/v1/models/mlp/routing', { method: 'PUT', key: null, headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ weights: null }) }],
    ['unload', '/v1/models/mlp/versions/1/unload', { method: 'POST', key: null, headers: admin }],
    ['load', '/v1/models/mlp/versions/1/load', { method: 'POST', key: null, headers: admin }],
    ['rollouts', '/v1/models/mlp/rollouts', { key: null, headers: admin }],
    ['rollout create', '/v1/models/mlp/rollouts', { method: 'POST', key: null, headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ version: '1', steps: [50, 100], step_seconds: 60 }) }],
    ['events', '/v1/models/mlp/events', { key: null, headers: admin }],
  ];
}

describe('every Redis-backed route while Redis is away', function () {
  this.timeout(150_000);
  let redis: OwnRedis;
  let p: TestPlatform;
  let jobId: string;
  let batchId: string;
  let eventId: string;
  before(async () => {
    redis = await OwnRedis.start();
    p = await startPlatform({ redisUrl: redis.url, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, WEBHOOK_ALLOW_PRIVATE: 'true' } });
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features }, webhook: 'http://127.0.0.1:9/hook' }), headers: { prefer: 'wait=10' } });
    jobId = ((await res.json()) as Job).id;
    const b = await p.api('/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'mlp', items: [{ custom_id: 'a', input: { features } }] }) });
    expect(b.status).to.equal(202);
    batchId = ((await b.json()) as Batch).id;
    eventId = await waitUntil(async () => {
      const d = await p.api(`/v1/jobs/${jobId}/webhook_deliveries`);
      const j = (await d.json()) as { data?: Array<{ id: string }> };
      return j.data?.[0]?.id;
    }, 10_000, 'the job.completed event');
  });
  after(async () => {
    // Stopped while Redis is still away (test/shutdown-redis-away.test.ts's case), then its keys deleted with Redis back.
    await p?.worker?.close().catch(() => undefined);
    await p?.gateway.close().catch(() => undefined);
    await redis?.start().catch(() => undefined);
    await p?.close().catch(() => undefined);
    await redis?.stop();
  });

  async function probeAll(): Promise<Record<string, Answer>> {
    const answers: Record<string, Answer> = {};
    await Promise.all(routes(jobId, batchId, eventId).map(async ([name, pathname, init]) => {
      const t = performance.now();
      const r = await p.api(pathname, init);
      const text = await r.text();
      answers[name] = { status: r.status, type: String(r.headers.get('content-type')).split(';')[0]!, retryAfter: r.headers.get('retry-after'), ms: Math.round(performance.now() - t), text: text.slice(0, 200) };
    }));
    return answers;
  }

  it('Redis killed: each answers 503 unavailable problem+json with Retry-After, at once', async () => {
    await redis.stop();
    const answers = await probeAll();
    const bad = Object.entries(answers).filter(([, a]) => a.status !== 503 || a.type !== 'application/problem+json' || !a.retryAfter || a.ms > 3000);
    expect(bad, JSON.stringify(bad, null, 1)).to.deep.equal([]);
    await redis.start();
    await waitUntil(async () => (await fetch(`${p.baseUrl}/readyz`)).status === 200, 20_000, 'ready again');
  });
});
