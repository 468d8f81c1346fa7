import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, POST /v1/jobs: "202 stored and queued; or Prefer: wait ran out
 * while the job was still queued or running". A submit with Prefer: wait whose
 * job was stored and queued, and whose wait runs out while Redis is away
 * (killed for real, AOF on: nothing it acknowledged is lost).
 */
describe('a Prefer: wait submit whose wait ends while Redis is away', function () {
  this.timeout(90_000);
  let redis: OwnRedis;
  let dir: string;
  let p: TestPlatform;
  let watcher: Redis;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rvf-wait-'));
    redis = await OwnRedis.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
    p = await startPlatform({ redisUrl: redis.url, worker: false });
    watcher = new Redis(redis.url, { maxRetriesPerRequest: null });
    watcher.on('error', () => undefined);
  });
  after(async () => {
    watcher?.disconnect();
    await redis?.start().catch(() => undefined);
    await p?.close().catch(() => undefined);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 202 with the accepted job (its id), not a 503 that tells the client to submit it again', async () => {
    const k = interactiveKeys(p.prefix, 'mlp', p.gateway.models.resolve('mlp').version);
    const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });
    const t0 = performance.now();
    const answer = p.api('/v1/jobs', { method: 'POST', body, headers: { prefer: 'wait=4' } }).then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), text: await r.text(), ms: Math.round(performance.now() - t0) }));
    // Stored and queued: its id is in the job index.
    const ids = await waitUntil(async () => {
      const all = await watcher.hkeys(k.index);
      return all.length === 1 ? all : undefined;
    }, 5000, 'the job to be stored and queued');
    const acceptedId = ids[0]!;
    await redis.stop();
    const a = await answer;
    await redis.start();
    // The job was accepted: once a worker is back, it runs.
    await waitUntil(async () => (await fetch(`${p.baseUrl}/readyz`)).status === 200, 20_000, 'ready again');
    await p.startWorker();
    const ran = await waitUntil(async () => {
      const r = await p.api(`/v1/jobs/${acceptedId}`);
      const j = (await r.json()) as Job;
      return j.status === 'succeeded' ? j : undefined;
    }, 20_000, 'the accepted job to run');
    expect(ran.id).to.equal(acceptedId);
    expect({ status: a.status, id: a.status < 300 ? (JSON.parse(a.text) as Job).id : undefined }, `answered after ${a.ms} ms, Retry-After ${a.retryAfter}: ${a.text}`).to.deep.equal({ status: 202, id: acceptedId });
  });
});
