import net from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { queueCounts } from './helpers/limits.js';
import { waitUntil } from './helpers/wait.js';

/**
 * MAX_QUEUE_DEPTH / TENANT_MAX_QUEUED across gateways and queues, over HTTP, on the shipped models
 * (mlp 1, mlp 2, ocr-cls 1: three queues), and the limits lock not waited for within an allowance.
 */

const post = (base: string, version: string, x: number, key = TEST_KEY, headers: Record<string, string> = {}) =>
  fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'mlp', version, input: { features: mlpFeatures(x) } }),
  });

async function statusesOf(responses: Array<Promise<Response>>): Promise<Array<{ status: number; code?: string; retryAfter: string | null }>> {
  return Promise.all(
    responses.map(async (p) => {
      const r = await p;
      const body = (await r.json().catch(() => ({}))) as { code?: string };
      return { status: r.status, code: body.code, retryAfter: r.headers.get('retry-after') };
    }),
  );
}

/** POSTs pipelined on one keep-alive connection, in one write (the gateway reads them in one turn): their statuses. */
async function pipelined(base: string, jobs: Array<{ version: string; x: number }>): Promise<number[]> {
  const url = new URL(base);
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(Number(url.port), url.hostname, () => resolve(s));
    s.once('error', reject);
  });
  let text = '';
  const closed = new Promise<void>((resolve, reject) => {
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
  socket.write(
    jobs
      .map((j, i) => {
        const body = JSON.stringify({ model: 'mlp', version: j.version, input: { features: mlpFeatures(j.x) } });
        return (
          `POST /v1/jobs HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${TEST_KEY}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: ${i === jobs.length - 1 ? 'close' : 'keep-alive'}\r\n\r\n${body}`
        );
      })
      .join(''),
  );
  await closed;
  const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
  expect(statuses.length, 'one answer per request').to.equal(jobs.length);
  return statuses;
}

/** Counts in Redis for mlp 1 and 2 (see queueCounts), on a connection of their own. */
async function countsIn(prefix: string): Promise<Awaited<ReturnType<typeof queueCounts>>> {
  const redis = new Redis(TEST_REDIS_URL);
  try {
    return await queueCounts(redis, prefix);
  } finally {
    redis.disconnect();
  }
}

describe('limits over HTTP: a large write through one gateway, then a smaller one to another queue through another', function () {
  this.timeout(60_000);
  const DEPTH = 30;
  let p: TestPlatform;
  let second: Gateway;
  let g2: string;

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: String(DEPTH) } });
    second = await createGateway(p.config, silentLogger);
    g2 = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await second?.close();
    await p?.close();
  });

  it('holds MAX_QUEUE_DEPTH', async () => {
    const started = performance.now();
    // Gateway 2 takes one job (version 2's allowance made).
    expect((await post(g2, '2', 0)).status).to.equal(202);
    // Gateway 1 takes 25 for version 1 (pipelined on one connection: one envelope): 25 + 1 fit in 30.
    const first = (await pipelined(p.baseUrl, Array.from({ length: 25 }, (_, i) => ({ version: '1', x: i + 1 })))).map((status) => ({ status }));
    // Gateway 2, a moment later, 9 more for version 2: 4 fit.
    const later = await statusesOf(Array.from({ length: 9 }, (_, i) => post(g2, '2', i + 100)));
    const elapsed = performance.now() - started;
    for (const s of [...first, ...later]) expect(s.status, JSON.stringify(s)).to.be.oneOf([202, 503]);
    const accepted = 1 + [...first, ...later].filter((s) => s.status === 202).length;
    const counts = await countsIn(p.prefix);
    expect(counts.queued, 'the counters agree with the jobs indexed').to.equal(counts.indexed);
    expect(counts.queued, 'the counters agree with the 202s').to.equal(accepted);
    expect(accepted, `accepted ${accepted} for MAX_QUEUE_DEPTH ${DEPTH} in ${elapsed.toFixed(0)} ms`).to.equal(DEPTH);
  });
});

describe('limits over HTTP: a submit within its queue’s allowance never waits for the lock', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let admin: Redis;

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: '1000' } });
    admin = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    admin?.disconnect();
    await p?.close();
  });

  it('with 22 of 1000 instances queued, a submit within its queue’s allowance is not held behind a lock held by a dead gateway', async () => {
    // The registry of interactive queues only grows: 47 versions written to over the deployment's life
    // (rolled out and removed since) still count, as the docs say ("those of versions ... removed, included").
    await admin.sadd(keys(p.prefix).interactiveQueues, ...Array.from({ length: 47 }, (_, i) => JSON.stringify(['retired', String(i + 1)])));
    const first = await statusesOf(Array.from({ length: 21 }, (_, i) => post(p.baseUrl, '1', i)));
    expect(first.every((s) => s.status === 202), JSON.stringify(first)).to.equal(true);
    // Version 2's first job takes the lock for the queue's allowance.
    expect((await post(p.baseUrl, '2', 98)).status).to.equal(202);
    await admin.set(keys(p.prefix).limitsLock, 'a-dead-gateway', 'PX', 1500);
    const started = performance.now();
    const res = await post(p.baseUrl, '2', 99);
    const waited = performance.now() - started;
    expect(res.status).to.equal(202);
    expect(waited, `waited ${waited.toFixed(0)} ms with 21 of 1000 queued`).to.be.below(500);
  });
});

describe('limits over HTTP: TENANT_MAX_QUEUED smaller than the number of queues', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let admin: Redis;

  before(async () => {
    // 2 queued jobs a tenant, three queues (mlp 1, mlp 2, ocr-cls 1); MAX_QUEUE_DEPTH the default 1,000,000.
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: '2' } });
    admin = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    admin?.disconnect();
    await p?.close();
  });

  it('a second job within its allowance does not wait for the limits lock', async () => {
    // Its first job takes the lock for the tenant's allowance in the queue: all of its cap, nothing else queued.
    expect((await post(p.baseUrl, '1', 0)).status).to.equal(202);
    await admin.set(keys(p.prefix).limitsLock, 'a-dead-gateway', 'PX', 1500);
    const started = performance.now();
    const res = await post(p.baseUrl, '1', 1);
    const waited = performance.now() - started;
    expect(res.status).to.equal(202);
    expect(waited, `waited ${waited.toFixed(0)} ms with one job queued`).to.be.below(500);
  });
});

describe('limits over HTTP: bursts from three gateways over two queues, two tenants, with and without a worker', function () {
  this.timeout(60_000);
  const DEPTH = 60;
  const CAP = 24;
  let p: TestPlatform;
  const others: Gateway[] = [];
  const urls: string[] = [];

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: String(DEPTH), TENANT_MAX_QUEUED: String(CAP) } });
    urls.push(p.baseUrl);
    for (let i = 0; i < 2; i++) {
      const g = await createGateway(p.config, silentLogger);
      others.push(g);
      urls.push(`http://127.0.0.1:${await g.listen(0, '127.0.0.1')}`);
    }
  });
  after(async () => {
    for (const g of others) await g.close();
    await p?.close();
  });

  it('no worker: waves of bursts hold both limits and the counters agree with the jobs', async () => {
    let accepted = 0;
    const byTenant: Record<string, number> = { 'tenant-a': 0, 'tenant-b': 0 };
    for (let wave = 0; wave < 4; wave++) {
      const reqs = Array.from({ length: 60 }, (_, i) => {
        const key = i % 3 === 0 ? OTHER_TENANT_KEY : TEST_KEY;
        return { key, res: post(urls[(i + wave) % 3]!, (i >> 1) % 2 ? '2' : '1', wave * 100 + i, key) };
      });
      const answers = await statusesOf(reqs.map((r) => r.res));
      answers.forEach((a, i) => {
        expect(a.status, JSON.stringify(a)).to.be.oneOf([202, 429, 503]);
        if (a.status === 429) expect(a.code).to.equal('quota_exceeded');
        if (a.status === 503) expect(a.code, JSON.stringify(a)).to.equal('queue_full');
        if (a.status !== 202) expect(a.retryAfter).to.equal('5');
        if (a.status === 202) {
          accepted++;
          byTenant[reqs[i]!.key === TEST_KEY ? 'tenant-a' : 'tenant-b']!++;
        }
      });
    }
    const counts = await countsIn(p.prefix);
    expect(counts.queued).to.equal(counts.indexed);
    expect(counts.queued).to.equal(accepted);
    expect(counts.tenants).to.deep.equal(byTenant);
    expect(accepted, `accepted ${accepted} for ${DEPTH}`).to.be.at.most(DEPTH);
    // Each tenant sent more than its cap, and two caps (48) are under MAX_QUEUE_DEPTH: each holds exactly its cap.
    for (const [t, n] of Object.entries(byTenant)) expect(n, `${t}: ${n} for a cap of ${CAP}`).to.equal(CAP);
  });
});
