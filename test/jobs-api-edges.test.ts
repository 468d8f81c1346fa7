import net from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { jobKeys, type Job } from '@infer/contract';
import { expectProblem } from './helpers/jobs.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Edges of the job routes that no other test pins: many long polls on one job, another tenant's long
 * poll and cancel, HEAD, a trailing slash and a query string on the dispatch fast path, and the
 * Idempotency-Key replay answered for a body that fails the model's checks.
 */
describe('jobs API: edges of the job routes', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.25) } });

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_WAIT_SECONDS: '60' } });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    redis.disconnect();
    await p.close();
  });

  async function queuedJob(): Promise<string> {
    const res = await p.api('/v1/jobs', { method: 'POST', body });
    expect(res.status).to.equal(202);
    return ((await res.json()) as { id: string }).id;
  }

  it('200 concurrent long polls on one job: one watcher on its envelope, all answered at its cancel, none left waiting', async () => {
    const id = await queuedJob();
    const base = p.gateway.waiters.size;
    const polls = Array.from({ length: 200 }, () => p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=60' } }));
    await waitUntil(() => p.gateway.waiters.size === base + 200, 20_000, 'every long poll to be waiting');
    const k = jobKeys(p.prefix, id);
    const where = await redis.hget(k.index, id);
    const watchers = (await redis.hget(`${k.taggedPrefix}:${where}`, 'w')) ?? '';
    expect(watchers.split(p.gateway.waiters.channel).length - 1, 'this gateway’s channel on the envelope once').to.equal(1);
    const started = Date.now();
    expect((await p.api(`/v1/jobs/${id}/cancel`, { method: 'POST' })).status).to.equal(200);
    const answers = await Promise.all(polls);
    expect(Date.now() - started, 'answered by the cancel, not the 60 s wait').to.be.below(15_000);
    for (const res of answers) {
      expect(res.status).to.equal(200);
      expect(res.headers.get('preference-applied')).to.equal('wait=60');
      expect(((await res.json()) as Job).status).to.equal('canceled');
    }
    expect(p.gateway.waiters.size).to.equal(base);
  });

  it('another tenant: a long poll is 404 at once (no wait, no waiter), a cancel 404, and the owner’s job is untouched', async () => {
    const id = await queuedJob();
    const base = p.gateway.waiters.size;
    const started = Date.now();
    await expectProblem(await p.api(`/v1/jobs/${id}`, { key: OTHER_TENANT_KEY, headers: { prefer: 'wait=30' } }), 404, 'job_not_found');
    expect(Date.now() - started).to.be.below(5000);
    expect(p.gateway.waiters.size).to.equal(base);
    await expectProblem(await p.api(`/v1/jobs/${id}/cancel`, { method: 'POST', key: OTHER_TENANT_KEY }), 404, 'job_not_found');
    const own = await p.api(`/v1/jobs/${id}`);
    expect(((await own.json()) as Job).status).to.equal('queued');
  });

  it('HEAD /v1/jobs/{id}: 200, the GET’s headers (Content-Length of the Job) and no body; unknown: 404', async () => {
    const id = await queuedJob();
    const get = await p.api(`/v1/jobs/${id}`);
    const length = Buffer.byteLength(await get.text());
    const head = await p.api(`/v1/jobs/${id}`, { method: 'HEAD' });
    expect(head.status).to.equal(200);
    expect(head.headers.get('content-length')).to.equal(String(length));
    expect(head.headers.get('content-type')).to.match(/^application\/json/);
    expect(await head.text()).to.equal('');
    expect((await p.api('/v1/jobs/wakyyyanP5ocflstTo-hssPU5fYHGA', { method: 'HEAD' })).status).to.equal(404);
  });

  it('a trailing slash and a query string reach the same routes; GET /v1/jobs (no list) is 404 not_found', async () => {
    const viaSlash = await p.api('/v1/jobs/?x=1', { method: 'POST', body });
    expect(viaSlash.status).to.equal(202);
    const id = ((await viaSlash.json()) as Job).id;
    expect(viaSlash.headers.get('location')).to.equal(`/v1/jobs/${id}`);
    expect((await p.api(`/v1/jobs/${id}/?a=b`)).status).to.equal(200);
    expect((await p.api(`/v1/jobs/${id}/cancel?x=1`, { method: 'POST' })).status).to.equal(200);
    expect((await p.api(`/v1/jobs/${id}/cancel/`, { method: 'POST' })).status).to.equal(409);
    await expectProblem(await p.api('/v1/jobs'), 404, 'not_found');
  });

  it('an Idempotency-Key replay: a body the model refuses (404, 422) gets the first job; a body of the wrong shape (400) is refused; another tenant gets a job of its own', async () => {
    const key = { 'idempotency-key': 'edges-replay-1' };
    const first = await p.api('/v1/jobs', { method: 'POST', body, headers: key });
    expect(first.status).to.equal(202);
    const id = ((await first.json()) as Job).id;
    for (const other of ['{"model":"nope","input":{}}', '{"model":"mlp","input":{}}']) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: other, headers: { ...key, prefer: 'wait=0.1' } });
      expect(res.status, other).to.equal(200);
      expect(res.headers.get('idempotent-replayed')).to.equal('true');
      expect(res.headers.get('location')).to.equal(`/v1/jobs/${id}`);
      expect(res.headers.get('preference-applied')).to.equal('wait=1');
      expect(((await res.json()) as Job).id).to.equal(id);
    }
    await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: '{"model":"mlp","extra":1}', headers: key }), 400, 'invalid_input');
    const theirs = await p.api('/v1/jobs', { method: 'POST', body, headers: key, key: OTHER_TENANT_KEY });
    expect(theirs.status).to.equal(202);
    expect(theirs.headers.get('idempotent-replayed')).to.equal(null);
    expect(((await theirs.json()) as Job).id).to.not.equal(id);
  });

  it('a long poll with HTTP/1.0 and no Host answers when its wait runs out, with Preference-Applied', async () => {
    const id = await queuedJob();
    const socket = net.connect(Number(new URL(p.baseUrl).port), '127.0.0.1');
    socket.on('error', () => undefined);
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write(`GET /v1/jobs/${id} HTTP/1.0\r\nAuthorization: Bearer ${TEST_KEY}\r\nPrefer: wait=0.2\r\n\r\n`);
    await closed;
    expect(text).to.match(/^HTTP\/1\.1 200 /);
    expect(text.toLowerCase()).to.include('preference-applied: wait=1');
    expect(text).to.include(`"id":"${id}"`);
  });
});
