import { expect } from 'chai';
import { Redis } from 'ioredis';
import { listKeys } from './helpers/redis-keys.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { mlpFeatures, streamedUpload } from './helpers/batches.js';
import { allGone, postJob } from './helpers/jobs.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Redis key hygiene on the failure paths: an NDJSON upload whose
 * client goes away mid-body (after chunks were written), webhook receivers
 * that always fail, long polls on jobs that are then canceled. Once the
 * jobs have expired and the deliveries have given up, nothing of theirs is
 * left without a bound.
 */
const TTL_S = 2;

describe('failure paths', function () {
  this.timeout(180_000);
  let p: TestPlatform;
  let redis: Redis;
  let failing: WebhookReceiver;

  before(async () => {
    failing = await startWebhookReceiver(() => 500);
    p = await startPlatform({ env: { RESULT_TTL_SECONDS: String(TTL_S), WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50,50' } });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    await failing?.close();
  });

  it('an upload cut off mid-body, failed deliveries and canceled long-polled jobs leave no unbounded keys', async () => {
    // An NDJSON upload of 3 chunks' worth of rows whose client goes away after two chunks were sent.
    const line = (i: number) => JSON.stringify({ custom_id: `u${i}`, input: { features: mlpFeatures(i % 50) } }) + '\n';
    const { req, answer } = streamedUpload(p);
    let text = '';
    for (let i = 0; i < 4500; i++) text += line(i);
    req.write(text);
    const bulkPrefix = `${p.prefix}:`;
    // Wait until the gateway has written a batch record (the upload is being read), then cut it off.
    const batchKey = await waitUntil(
      async () => (await listKeys(redis, p.prefix)).find((k) => /:batch:\{[^}]+\}$/.test(k.key))?.key,
      20_000,
      'the upload to start writing',
    );
    await waitUntil(async () => (await redis.hlen(`${batchKey}:pending`)) >= 1 || (await redis.hlen(`${batchKey}:results`)) >= 1, 20_000, 'a chunk written');
    req.destroy();
    await answer;
    const batchId = /\{([^}]+)\}/.exec(batchKey.slice(bulkPrefix.length))![1]!;

    // Jobs whose webhook receiver always fails (500): 3 attempts each, then the delivery fails for good.
    const hooked = await Promise.all([0, 1, 2].map((i) => postJob(p, { model: 'mlp', input: { features: mlpFeatures(i) }, webhook: failing.url }, { wait: 20 })));
    const ids = hooked.map((h) => h.job.id);
    await waitUntil(() => failing.deliveries.length >= 9, 30_000, 'every attempt of the failing deliveries');

    // Everything ends and expires; the cut upload is let go.
    await waitUntil(
      () => allGone(p, [...ids.map((id) => `/v1/jobs/${id}`), `/v1/batches/${batchId}`]),
      (TTL_S + 30) * 1000,
      'the jobs and the cut batch to go',
    );
    await waitUntil(async () => (await redis.llen(`${p.prefix}:{webhooks}:webhooks:wait`)) === 0 && (await redis.llen(`${p.prefix}:{webhooks}:webhooks:active`)) === 0 && (await redis.zcard(`${p.prefix}:{webhooks}:webhooks:delayed`)) === 0, 20_000, 'the webhook queue to settle');
    // The cut batch's chunks that reached the bulk queue are run or skipped.
    await waitUntil(async () => (await listKeys(redis, p.prefix)).every((k) => !k.key.includes(batchId) || k.pttl >= 0), 30_000, 'the cut batch keys to settle');

    const keys = await listKeys(redis, p.prefix);
    const perWork = keys.filter((x) => x.key.includes(batchId) || ids.some((id) => x.key.includes(id)));
    expect(perWork.filter((x) => x.pttl < 0).map((x) => x.key), 'keys of the work without a TTL').to.deep.equal([]);
    const bulkHashes = keys.filter((x) => /:bulk\.mlp\.v\d+:[^:]+$/.test(x.key) && x.type === 'hash' && !x.key.endsWith(':meta'));
    expect(bulkHashes.map((x) => x.key), 'bulk chunk job hashes left').to.deep.equal([]);
  });
});
