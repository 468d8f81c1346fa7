import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const body = (x: number) => JSON.stringify({ model: 'mlp', version: '2', input: { features: new Array(64).fill(x) } });

describe('probe counts', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: '2', MAX_QUEUE_DEPTH: '3' } });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => { redis.disconnect(); await p?.close(); });
  const counts = async () => {
    const k = interactiveKeys(p.prefix, 'mlp', '2');
    return { queued: await redis.get(k.queued), tenants: await redis.hgetall(k.tenants) };
  };
  it('deadline via worker sweep', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await p.api('/v1/jobs', { method: 'POST', body: body(i), headers: { 'cancel-after': '200ms' } });
      expect(r.status).to.equal(202);
    }
    console.log('after submit', await counts());
    await p.startWorker();
    await waitUntil(async () => (await counts()).queued === '0', 5000, 'zero');
    console.log('after worker', await counts());
    const r = await p.api('/v1/jobs', { method: 'POST', body: body(9) });
    console.log(r.status, await r.text());
  });
});
