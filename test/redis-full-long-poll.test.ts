import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';

/**
 * docs/operations.md, "When Redis is full": "Reads (GET /v1/jobs/{id},
 * results downloads) keep working." A long poll (GET /v1/jobs/{id} with
 * Prefer: wait) is such a read: the client waits for a job the workers are
 * draining. It must answer like any GET, not 503 "Redis is full".
 */
describe('Redis full: long polls', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let admin: Redis;
  let p: TestPlatform;
  before(async () => {
    redis = await OwnRedis.start(['--maxmemory-policy', 'noeviction']);
    admin = new Redis(redis.url);
    p = await startPlatform({ redisUrl: redis.url, worker: false });
  });
  after(async () => {
    await admin?.config('SET', 'maxmemory', '0').catch(() => undefined);
    await p?.close().catch(() => undefined);
    admin?.disconnect();
    await redis?.stop();
  });

  it('GET /v1/jobs/{id} with Prefer: wait answers the queued job while Redis is full, as a plain GET does', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }) });
    expect(res.status).to.equal(202);
    const { id } = (await res.json()) as Job;
    // Full: every write that needs memory is refused from now on.
    await admin.config('SET', 'maxmemory', '1');
    const refused = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }) });
    expect(refused.status, 'a submit while full').to.equal(503);
    await refused.body?.cancel();

    const plain = await p.api(`/v1/jobs/${id}`);
    expect(plain.status, 'plain GET while full').to.equal(200);
    await plain.body?.cancel();

    const waited = await p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=1' } });
    const text = await waited.text();
    expect({ status: waited.status, body: waited.status === 200 ? (JSON.parse(text) as Job).status : text }).to.deep.equal({ status: 200, body: 'queued' });
  });
});
