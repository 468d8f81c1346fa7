import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import type { WebhookDelivery } from '@infer/webhooks';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { elapse, waitUntil } from './helpers/wait.js';
import { startRawReceiver, type RawReceiver } from './helpers/webhook-receiver.js';

/**
 * Redis killed and restarted with its data (AOF, fsync always) between two
 * attempts of a delivery, and during one: the delivery still ends, with one
 * log row per attempt made, the same webhook-id, signatures that verify.
 */

describe('webhooks: Redis restarted (with its data) around webhook attempts', function () {
  this.timeout(60_000);
  let dir: string;
  let redis: OwnRedis;
  let p: TestPlatform;
  const receivers: Array<{ close(): Promise<void> }> = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rh-redis-'));
    redis = await OwnRedis.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
    p = await startPlatform({ redisUrl: redis.url, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '1500', WORKER_LOCK_MS: '1000' } });
  });
  after(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await p?.close().catch(() => undefined);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const submit = async (webhook: string) => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook }) });
    expect(res.status, await res.clone().text()).to.equal(202);
    return ((await res.json()) as { id: string }).id;
  };
  const deliveryOf = async (jobId: string) => ((await (await p.api(`/v1/jobs/${jobId}/webhook_deliveries`)).json()) as { data: WebhookDelivery[] }).data[0];
  const ready = () => waitUntil(async () => (await fetch(`${p.baseUrl}/readyz`).catch(() => undefined))?.status === 200, 20_000, '/readyz 200');

  it('between two attempts: the retry still comes, same id, logged once each', async () => {
    const r = await startRawReceiver((n) => (n === 1 ? 500 : 204));
    receivers.push(r);
    const secretBefore = ((await (await p.api('/v1/webhooks/secret')).json()) as { secret: string }).secret;
    const jobId = await submit(r.url);
    await waitUntil(async () => (await deliveryOf(jobId))?.attempt_count === 1, 20_000, 'the first attempt logged');
    await redis.stop();
    await redis.start();
    await ready();
    const d = await waitUntil(async () => {
      const x = await deliveryOf(jobId);
      return x && x.state !== 'pending' ? x : undefined;
    }, 20_000, 'the delivery to end');
    expect(d.attempts.map((a) => [a.attempt, a.status_code])).to.deep.equal([
      [1, 500],
      [2, 204],
    ]);
    expect(r.got).to.have.length(2);
    expect(r.got[1]!.headers['webhook-id']).to.equal(r.got[0]!.headers['webhook-id']);
    const secretAfter = ((await (await p.api('/v1/webhooks/secret')).json()) as { secret: string }).secret;
    expect(secretAfter).to.equal(secretBefore);
    for (const g of r.got) new Webhook(secretAfter).verify(g.body, g.headers);
  });

  it('during an attempt, answered 204 while Redis is away for longer than the lock: ends succeeded, its attempts numbered once each', async () => {
    const r = await startRawReceiver((n) => (n === 1 ? 'hang' : 204));
    receivers.push(r);
    const jobId = await submit(r.url);
    await waitUntil(() => r.got.length >= 1, 20_000, 'the attempt in flight');
    await redis.stop();
    r.got[0]!.res.writeHead(204).end();
    await elapse(2500, 'Redis stays away past the run’s lock (WORKER_LOCK_MS 1000)');
    await redis.start();
    await ready();
    const d = await waitUntil(async () => {
      const x = await deliveryOf(jobId);
      return x && x.state !== 'pending' ? x : undefined;
    }, 20_000, 'the delivery to end');
    const numbers = d.attempts.map((a) => a.attempt);
    expect(d.state, JSON.stringify(d.attempts)).to.equal('succeeded');
    expect(new Set(numbers).size, JSON.stringify(d.attempts)).to.equal(numbers.length);
    expect(d.attempt_count).to.equal(d.attempts.length);
    expect(d.attempts.length, 'one row per request the receiver got').to.equal(r.got.length);
  });
});
