import { expect } from 'chai';
import { Redis } from 'ioredis';
import { ConfigError, loadConfig } from '@infer/config';
import type { Job } from '@infer/contract';
import { deletePrefix, startPlatform, TEST_REDIS_URL, uniquePrefix, type TestPlatform } from './helpers/platform.js';
import { mlpFeatures, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * QUEUE_PREFIX with the odd characters it allows (README: "the prefix of
 * every Redis key"; config: 1-64 of A-Z a-z 0-9 _ . : -): colons, dots and
 * dashes run jobs, batches and webhooks with every key under the prefix;
 * braces (the keys' hash tags) are refused at start, naming the variable.
 */
describe('config: QUEUE_PREFIX with odd characters', function () {
  this.timeout(90_000);
  const own = uniquePrefix('rvq');
  const queuePrefix = `${own}:a.b-c:D_9`;
  let p: TestPlatform;
  let hooks: WebhookReceiver;

  before(async () => {
    hooks = await startWebhookReceiver();
    p = await startPlatform({ env: { QUEUE_PREFIX: queuePrefix, WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100' } });
  });
  after(async () => {
    await p?.close();
    await hooks?.close();
    await deletePrefix(TEST_REDIS_URL, own);
  });

  it('refuses braces and spaces, naming QUEUE_PREFIX', () => {
    for (const bad of ['{infer}', 'in{fer', 'a b', 'x'.repeat(65)]) {
      let err: unknown;
      try {
        loadConfig({ QUEUE_PREFIX: bad });
      } catch (e) {
        err = e;
      }
      expect(err, bad).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).problems.join('\n'), bad).to.match(/^QUEUE_PREFIX: /);
    }
  });

  it('a job with a webhook and a batch run under "<p>:a.b-c:D_9", every key they write under it', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(5) }, webhook: hooks.url }), headers: { prefer: 'wait=20' } });
    const job = (await res.json()) as Job;
    expect({ status: res.status, job: job.status }).to.deep.equal({ status: 200, job: 'succeeded' });
    const batch = await submitBatch(p, { json: { model: 'mlp', items: [{ custom_id: 'a', input: { features: mlpFeatures(1) } }] } });
    expect((await waitForBatchEnd(p, batch.id, 30_000)).request_counts.succeeded).to.equal(1);
    await waitUntil(() => hooks.deliveries.length >= 1, 20_000, 'the job.completed delivery');
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const mine = await redis.keys(`${own}:*`);
      expect(mine.length).to.be.above(0);
      expect(mine.filter((k) => !k.startsWith(`${queuePrefix}:`))).to.deep.equal([]);
    } finally {
      redis.disconnect();
    }
  });
});
