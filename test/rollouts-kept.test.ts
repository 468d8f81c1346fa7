import { expect } from 'chai';
import { Redis } from 'ioredis';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

/**
 * docs/architecture.md bounds a model's rollout keys (`…:rollout`,
 * `…:rollouts`, `…:rollout:{id}`) by "100 rollouts per model": a rollout
 * that falls off the trimmed list goes with its state key (which has no TTL).
 */

const ADMIN = 'admin-secret';

describe('rollout state keys past the 100 kept', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    p = await startPlatform({ env: { ADMIN_API_KEYS: `ops:${ADMIN}`, RATE_LIMIT_PER_SECOND: '1000000' } });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
  });

  const admin = (path: string, init: RequestInit = {}) =>
    fetch(p.baseUrl + path, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });

  it('keeps at most 100 rollouts of a model in Redis, as documented, after 110 started and canceled', async () => {
    const N = 110;
    for (let i = 0; i < N; i++) {
      const started = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '1', steps: [50, 100], step_seconds: 3600 }) });
      const body = (await started.json()) as { id: string };
      expect(started.status, JSON.stringify(body)).to.equal(201);
      const canceled = await admin(`/v1/models/mlp/rollouts/${body.id}/cancel`, { method: 'POST' });
      expect(canceled.status, await canceled.text()).to.equal(200);
    }
    const listed = (await (await admin('/v1/models/mlp/rollouts')).json()) as { data: unknown[] };
    expect(listed.data.length, 'rollouts listed').to.equal(100);

    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${p.prefix}:{m:mlp}:rollout:*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...found.filter((k) => /:rollout:ro_[A-Za-z0-9_-]+$/.test(k)));
    } while (cursor !== '0');
    const withoutTtl = (await Promise.all(keys.map((k) => redis.pttl(k)))).filter((t) => t < 0).length;
    expect(keys.length, `rollout state keys in Redis (${withoutTtl} of them without a TTL; 100 listed)`).to.be.at.most(100);
  });
});
