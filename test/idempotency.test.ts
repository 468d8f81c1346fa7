import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { OTHER_TENANT_KEY, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

const body = JSON.stringify({ model: 'mlp', version: 1, input: { features: new Array(64).fill(0.25) } });

describe('Idempotency-Key', () => {
  let p: TestPlatform;
  let redis: Redis;
  /** Jobs accepted and not ended in mlp v1's queue (no worker runs: that is every job enqueued). */
  const queued = () => redis.hlen(interactiveKeys(p.prefix, 'mlp', '1').index);
  before(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis.disconnect();
    await p.close();
  });

  it('returns the first job (200) and enqueues nothing new for the same key', async () => {
    const first = await p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': 'order-1' } });
    expect(first.status).to.equal(202);
    const job = (await first.json()) as { id: string };
    const again = await p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': 'order-1' } });
    expect(again.status).to.equal(200);
    expect(again.headers.get('idempotent-replayed')).to.equal('true');
    expect(((await again.json()) as { id: string }).id).to.equal(job.id);
    expect(await queued()).to.equal(1);
  });

  it('gives one job to concurrent requests with the same key', async () => {
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': 'burst' } })),
    );
    const ids = new Set(await Promise.all(answers.map(async (r) => ((await r.json()) as { id: string }).id)));
    expect(ids.size).to.equal(1);
    expect(answers.filter((r) => r.status === 202)).to.have.length(1);
  });

  it('keeps keys apart per tenant, and different keys make different jobs', async () => {
    const a = await p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': 'shared' } });
    const b = await p.api('/v1/jobs', { method: 'POST', body, key: OTHER_TENANT_KEY, headers: { 'idempotency-key': 'shared' } });
    const c = await p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': 'other' } });
    expect([a.status, b.status, c.status]).to.deep.equal([202, 202, 202]);
    const ids = await Promise.all([a, b, c].map(async (r) => ((await r.json()) as { id: string }).id));
    expect(new Set(ids).size).to.equal(3);
  });

  it('refuses a malformed key with 400', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': 'x'.repeat(300) } });
    expect(res.status).to.equal(400);
    expect(((await res.json()) as { code: string }).code).to.equal('invalid_input');
  });
});
