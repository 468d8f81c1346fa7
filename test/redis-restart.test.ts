import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { interactiveKeys, type Job } from '@infer/contract';
import { Redis } from 'ioredis';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

/** Redis killed and restarted (AOF): every route answers 503 problem+json at once while it is away; a long poll spans the outage. */
describe('Redis killed and restarted', function () {
  this.timeout(90_000);
  let redis: OwnRedis;
  let dir: string;
  let p: TestPlatform;
  /** The test's own look at Redis. */
  let watcherRedis: Redis;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rf-redis-'));
    redis = await OwnRedis.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
    p = await startPlatform({ redisUrl: redis.url, worker: false });
    watcherRedis = new Redis(redis.url, { maxRetriesPerRequest: null });
  });
  after(async () => {
    watcherRedis?.disconnect();
    await p?.close().catch(() => undefined);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });

  it('answers 503 problem+json everywhere while Redis is away, /readyz too, and a long poll spanning the outage gets its job', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body });
    expect(res.status).to.equal(202);
    const { id } = (await res.json()) as Job;
    // The longest wait: it must span the outage, the probes and the restart, however slow a loaded machine makes them.
    const longPoll = p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=60' } });
    // Registered on the envelope before Redis goes (its read done: one cut mid-way answers 503, as any command then).
    const k = interactiveKeys(p.prefix, 'mlp', p.gateway.models.resolve('mlp').version);
    const envelope = await waitUntil(async () => (await watcherRedis.lrange(k.wait, 0, -1))[0], 5000, 'the job to be queued');
    await waitUntil(async () => ((await watcherRedis.hget(k.base + envelope, 'w')) ?? '').includes(id), 5000, 'the long poll to be registered');
    await redis.stop();
    const answers: Record<string, { status: number; type: string; ms: number }> = {};
    const probe = async (name: string, pathname: string, init: RequestInit = {}) => {
      const t = performance.now();
      const r = await p.api(pathname, init);
      await r.text();
      answers[name] = { status: r.status, type: String(r.headers.get('content-type')).split(';')[0]!, ms: performance.now() - t };
    };
    await probe('submit', '/v1/jobs', { method: 'POST', body });
    await probe('submit+wait', '/v1/jobs', { method: 'POST', body, headers: { prefer: 'wait=5' } });
    await probe('get', `/v1/jobs/${id}`);
    await probe('get+wait', `/v1/jobs/${id}`, { headers: { prefer: 'wait=5' } });
    await probe('batch', '/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: JSON.stringify({ input: { features: new Array(64).fill(0.5) } }) + '\n' });
    await probe('batches', '/v1/batches');
    const ready = await fetch(`${p.baseUrl}/readyz`);
    for (const [name, a] of Object.entries(answers)) {
      expect({ name, status: a.status, type: a.type }, JSON.stringify(answers)).to.deep.equal({ name, status: 503, type: 'application/problem+json' });
      expect(a.ms, `${name} ms`).to.be.below(3000);
    }
    expect(ready.status).to.equal(503);
    await redis.start();
    await waitUntil(async () => (await fetch(`${p.baseUrl}/readyz`)).status === 200, 15_000, '/readyz 200 again');
    await p.startWorker();
    const polled = await longPoll;
    const job = (await polled.json()) as Job;
    expect({ status: polled.status, job: job.status }).to.deep.equal({ status: 200, job: 'succeeded' });
    const after = await p.api('/v1/jobs', { method: 'POST', body, headers: { prefer: 'wait=10' } });
    expect(((await after.json()) as Job).status).to.equal('succeeded');
  });
});
