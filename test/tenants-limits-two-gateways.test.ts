import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

/**
 * TENANT_MAX_QUEUED and MAX_QUEUE_DEPTH under a burst from two gateways that share two model queues,
 * two tenants at once. docs/api.md POST /v1/jobs: "gateways that share queues stay within a few jobs of it";
 * quotas are per tenant ("only that tenant's jobs are refused").
 */

const post = (base: string, version: string, x: number, key: string) =>
  fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mlp', version, input: { features: mlpFeatures(x) } }),
  });

async function queuedIn(prefix: string): Promise<number> {
  const redis = new Redis(TEST_REDIS_URL);
  try {
    return (await Promise.all(['1', '2'].map((v) => redis.hlen(interactiveKeys(prefix, 'mlp', v).index)))).reduce((a, b) => a + b, 0);
  } finally {
    redis.disconnect();
  }
}

describe('tenants: TENANT_MAX_QUEUED per tenant, two tenants bursting through two gateways over two queues', function () {
  this.timeout(120_000);
  const CAP = 20;
  let p: TestPlatform;
  let second: Gateway;
  let secondUrl: string;

  before(async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: String(CAP) } });
    second = await createGateway(p.config, silentLogger);
    secondUrl = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await second?.close();
    await p?.close();
  });

  it('each tenant is held to its cap within 10%; one tenant never takes the other’s room', async () => {
    const N = 60;
    const reqs: Array<{ key: string; res: Promise<Response> }> = [];
    for (let i = 0; i < N; i++) {
      for (const key of [TEST_KEY, OTHER_TENANT_KEY]) {
        reqs.push({ key, res: post(i % 2 ? p.baseUrl : secondUrl, (i >> 1) % 2 ? '2' : '1', i, key) });
      }
    }
    const answers = await Promise.all(reqs.map(async (r) => ({ key: r.key, status: (await r.res).status, res: await r.res })));
    await Promise.all(answers.map((a) => a.res.body?.cancel()));
    const statuses = answers.map((a) => a.status);
    expect(statuses.every((s) => s === 202 || s === 429), statuses.join(',')).to.equal(true);
    const a = answers.filter((x) => x.key === TEST_KEY && x.status === 202).length;
    const b = answers.filter((x) => x.key === OTHER_TENANT_KEY && x.status === 202).length;
    expect(await queuedIn(p.prefix)).to.equal(a + b);
    expect(a, `tenant-a accepted ${a} for a cap of ${CAP}`).to.be.within(CAP, Math.ceil(CAP * 1.1));
    expect(b, `tenant-b accepted ${b} for a cap of ${CAP}`).to.be.within(CAP, Math.ceil(CAP * 1.1));
  });
});

describe('tenants: MAX_QUEUE_DEPTH under a burst from two gateways over two queues', function () {
  this.timeout(120_000);
  const DEPTH = 40;
  let p: TestPlatform;
  let second: Gateway;
  let secondUrl: string;

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: String(DEPTH) } });
    second = await createGateway(p.config, silentLogger);
    secondUrl = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await second?.close();
    await p?.close();
  });

  it('holds within 10% of the limit, whichever tenant sends', async () => {
    const N = 160;
    const answers = await Promise.all(
      Array.from({ length: N }, (_, i) => post(i % 2 ? p.baseUrl : secondUrl, (i >> 1) % 2 ? '2' : '1', i, (i >> 2) % 2 ? TEST_KEY : OTHER_TENANT_KEY)),
    );
    const statuses = answers.map((r) => r.status);
    await Promise.all(answers.map((r) => r.body?.cancel()));
    expect(statuses.every((s) => s === 202 || s === 503), statuses.join(',')).to.equal(true);
    const accepted = statuses.filter((s) => s === 202).length;
    expect(await queuedIn(p.prefix)).to.equal(accepted);
    expect(accepted, `accepted ${accepted} for MAX_QUEUE_DEPTH ${DEPTH}`).to.be.within(DEPTH * 0.9, DEPTH * 1.1);
  });

  it('a refused tenant learns the limit, not how much the other tenants have queued', async () => {
    const res = await post(p.baseUrl, '1', 999, OTHER_TENANT_KEY);
    expect(res.status).to.equal(503);
    const problem = (await res.json()) as { code: string; detail: string };
    expect(problem.code).to.equal('queue_full');
    // The old detail was "The queue holds <every tenant's queued instances> instances, at its limit of …".
    expect(problem.detail).to.equal(`The queues are at their limit of ${DEPTH} instances; retry later`);
  });
});

describe('tenants: replays, cancels and open batches at the limits, over two gateways', function () {
  this.timeout(120_000);
  let p: TestPlatform;
  let second: Gateway;
  let g2: string;

  before(async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: '2', TENANT_MAX_OPEN_BATCHES: '1' } });
    second = await createGateway(p.config, silentLogger);
    g2 = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await second?.close();
    await p?.close();
  });

  const submit = (base: string, key: string, version: string, idem?: string) =>
    fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(idem ? { 'idempotency-key': idem } : {}) },
      body: JSON.stringify({ model: 'mlp', version, input: { features: mlpFeatures(7) } }),
    });

  it('at its cap a tenant still gets its replays (200), a cancel on one gateway frees room on the other, the other tenant is untouched', async () => {
    const first = await submit(p.baseUrl, TEST_KEY, '1', 'idem-1');
    expect(first.status).to.equal(202);
    const job = (await first.json()) as { id: string };
    expect((await submit(g2, TEST_KEY, '2')).status).to.equal(202);
    const over = await submit(g2, TEST_KEY, '1');
    expect(over.status).to.equal(429);
    expect(((await over.json()) as { code: string }).code).to.equal('quota_exceeded');
    const replay = await submit(g2, TEST_KEY, '2', 'idem-1');
    expect(replay.status, 'a replay is not a new job: no limit applies').to.equal(200);
    expect(((await replay.json()) as { id: string }).id).to.equal(job.id);
    // The other tenant, same idempotency key, own job.
    const theirs = await submit(p.baseUrl, OTHER_TENANT_KEY, '1', 'idem-1');
    expect(theirs.status).to.equal(202);
    expect(((await theirs.json()) as { id: string }).id).to.not.equal(job.id);
    // Cancel on gateway 2; gateway 1 takes a new job of the tenant on the same queue at once.
    expect((await fetch(`${g2}/v1/jobs/${job.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}` } })).status).to.equal(200);
    expect((await submit(p.baseUrl, TEST_KEY, '1')).status).to.equal(202);
  });

  it('TENANT_MAX_OPEN_BATCHES=1 under a burst of uploads to both gateways: one batch per tenant; a cancel frees the slot', async () => {
    const upload = (base: string, key: string) =>
      fetch(`${base}/v1/batches`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mlp', version: 2, items: [{ input: { features: mlpFeatures(1) } }] }),
      });
    const reqs = Array.from({ length: 12 }, (_, i) => ({ key: i % 2 ? TEST_KEY : OTHER_TENANT_KEY, res: upload(i % 4 < 2 ? p.baseUrl : g2, i % 2 ? TEST_KEY : OTHER_TENANT_KEY) }));
    const got = await Promise.all(reqs.map(async (r) => ({ key: r.key, res: await r.res })));
    const ok = got.filter((g) => g.res.status === 202);
    for (const g of got) {
      expect(g.res.status).to.be.oneOf([202, 429]);
      if (g.res.status === 429) expect(g.res.headers.get('retry-after')).to.equal('30');
    }
    expect(ok.filter((g) => g.key === TEST_KEY).length, 'tenant a').to.equal(1);
    expect(ok.filter((g) => g.key === OTHER_TENANT_KEY).length, 'tenant b').to.equal(1);
    const mine = (await ok.find((g) => g.key === TEST_KEY)!.res.json()) as { id: string };
    await Promise.all(got.map((g) => g.res.body?.cancel().catch(() => undefined)));
    expect((await fetch(`${p.baseUrl}/v1/batches/${mine.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}` } })).status).to.equal(200);
    const again = await upload(g2, TEST_KEY);
    expect(again.status, await again.clone().text()).to.equal(202);
    expect((await upload(g2, OTHER_TENANT_KEY)).status).to.equal(429);
  });
});
