import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { queueCounts } from './helpers/limits.js';
import { waitUntil } from './helpers/wait.js';

/**
 * MAX_QUEUE_DEPTH / TENANT_MAX_QUEUED: room given back (deadlines, worker takes, cancels,
 * refusals) and the limits under load while a worker takes jobs, over two gateways.
 */

const post = (base: string, version: string, x: number, key = TEST_KEY, headers: Record<string, string> = {}) =>
  fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'mlp', version, input: { features: mlpFeatures(x) } }),
  });

async function answer(res: Promise<Response>): Promise<{ status: number; code?: string; id?: string; retryAfter: string | null }> {
  const r = await res;
  const body = (await r.json().catch(() => ({}))) as { code?: string; id?: string };
  return { status: r.status, code: body.code, id: body.id, retryAfter: r.headers.get('retry-after') };
}


describe('limits: room given back after deadlines, cancels and refusals, over two gateways (no worker)', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let second: Gateway;
  let g2: string;
  let admin: Redis;

  before(async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: '4', MAX_QUEUE_DEPTH: '9' } });
    second = await createGateway(p.config, silentLogger);
    g2 = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    admin = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    admin?.disconnect();
    await second?.close();
    await p?.close();
  });

  it('a tenant at its cap through jobs whose Cancel-After passes gets its room back on the other gateway, and the counts go back to 0', async () => {
    const first = await Promise.all([0, 1, 2, 3].map((i) => answer(post(i % 2 ? p.baseUrl : g2, i % 2 ? '1' : '2', i, TEST_KEY, { 'cancel-after': '400ms' }))));
    expect(first.map((a) => a.status)).to.deep.equal([202, 202, 202, 202]);
    const over = await answer(post(g2, '1', 9));
    expect(over.status).to.equal(429);
    expect(over.code).to.equal('quota_exceeded');
    expect(over.retryAfter).to.equal('5');
    // The gateways sweep the deadlines while no worker serves the queues: the counts leave.
    await waitUntil(async () => (await queueCounts(admin, p.prefix)).queued === 0, 10_000, 'the expired jobs to leave the counts');
    const c = await queueCounts(admin, p.prefix);
    expect(c.tenants['tenant-a'] ?? 0).to.equal(0);
    expect(c.indexed).to.equal(0);
    const back = await Promise.all([0, 1, 2, 3].map((i) => answer(post(i % 2 ? g2 : p.baseUrl, i % 2 ? '1' : '2', 20 + i))));
    expect(back.map((a) => a.status), JSON.stringify(back)).to.deep.equal([202, 202, 202, 202]);
    // Cancel two of them on one gateway: the other one takes two more at once.
    for (const a of back.slice(0, 2)) {
      const r = await fetch(`${g2}/v1/jobs/${a.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}` } });
      expect(r.status).to.equal(200);
    }
    const more = await Promise.all([0, 1].map((i) => answer(post(p.baseUrl, i ? '1' : '2', 40 + i))));
    expect(more.map((a) => a.status), JSON.stringify(more)).to.deep.equal([202, 202]);
    const end = await queueCounts(admin, p.prefix);
    expect(end.queued).to.equal(4);
    expect(end.indexed).to.equal(4);
    expect(end.tenants).to.deep.equal({ 'tenant-a': 4 });
  });

  it('refused envelopes leave no count behind: the other tenant fills what MAX_QUEUE_DEPTH has left, exactly', async () => {
    // tenant-a holds 4 (above). 10 refused tenant-a submits, then tenant-b fills the rest (9 - 4 = 5), then is refused.
    const refused = await Promise.all(Array.from({ length: 10 }, (_, i) => answer(post(i % 2 ? p.baseUrl : g2, i % 2 ? '1' : '2', 60 + i))));
    expect(refused.every((a) => a.status === 429 && a.code === 'quota_exceeded'), JSON.stringify(refused)).to.equal(true);
    const b = await Promise.all(Array.from({ length: 8 }, (_, i) => answer(post(i % 2 ? p.baseUrl : g2, i % 2 ? '1' : '2', 80 + i, OTHER_TENANT_KEY))));
    const accepted = b.filter((a) => a.status === 202).length;
    for (const a of b) if (a.status !== 202) expect(a.code, JSON.stringify(a)).to.be.oneOf(['queue_full', 'quota_exceeded']);
    // tenant-b's own cap is 4; MAX_QUEUE_DEPTH leaves 5: it gets 4.
    expect(accepted).to.equal(4);
    const c = await queueCounts(admin, p.prefix);
    expect(c.queued).to.equal(8);
    expect(c.indexed).to.equal(8);
    expect(c.tenants).to.deep.equal({ 'tenant-a': 4, 'tenant-b': 4 });
  });
});

describe('limits: MAX_QUEUE_DEPTH while a worker takes jobs, bursts through two gateways', function () {
  this.timeout(60_000);
  const DEPTH = 30;
  let p: TestPlatform;
  let second: Gateway;
  let g2: string;
  let admin: Redis;

  before(async () => {
    p = await startPlatform({ worker: true, env: { MAX_QUEUE_DEPTH: String(DEPTH) } });
    second = await createGateway(p.config, silentLogger);
    await second.catalog.refresh();
    g2 = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    admin = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    admin?.disconnect();
    await second?.close();
    await p?.close();
  });

  it('the queued instances (sampled atomically across both queues) never pass the limit; all room comes back', async () => {
    const k1 = interactiveKeys(p.prefix, 'mlp', '1').queued;
    const k2 = interactiveKeys(p.prefix, 'mlp', '2').queued;
    let sampling = true;
    let most = 0;
    const sampler = (async () => {
      while (sampling) {
        const [a, b] = await admin.mget(k1, k2);
        most = Math.max(most, Number(a ?? 0) + Number(b ?? 0));
        await new Promise((r) => setImmediate(r));
      }
    })();
    const statuses: number[] = [];
    try {
      for (let wave = 0; wave < 8; wave++) {
        const answers = await Promise.all(
          Array.from({ length: 40 }, (_, i) => answer(post((i + wave) % 2 ? p.baseUrl : g2, (i >> 1) % 2 ? '2' : '1', wave * 100 + i))),
        );
        for (const a of answers) {
          statuses.push(a.status);
          expect(a.status, JSON.stringify(a)).to.be.oneOf([202, 503]);
          if (a.status === 503) expect(a.code, JSON.stringify(a)).to.equal('queue_full');
        }
      }
    } finally {
      sampling = false;
      await sampler;
    }
    expect(most, `at most ${most} queued for MAX_QUEUE_DEPTH ${DEPTH}`).to.be.at.most(DEPTH);
    expect(statuses.filter((s) => s === 202).length, 'the worker took jobs meanwhile: room came back').to.be.greaterThan(DEPTH);
    // The worker takes what is left: the counts go back to 0 and a full burst fits again.
    await waitUntil(async () => (await admin.mget(k1, k2)).every((n) => Number(n ?? 0) === 0), 20_000, 'the worker to take every job');
    const again = await Promise.all(Array.from({ length: 9 }, (_, i) => answer(post(i % 2 ? p.baseUrl : g2, i % 2 ? '1' : '2', 999 + i))));
    expect(again.map((a) => a.status)).to.deep.equal(Array(9).fill(202));
  });
});
