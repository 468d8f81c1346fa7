import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { EnvelopeQueue } from '@infer/job-store';
import { mlpFeatures } from './helpers/batches.js';
import { postJob } from './helpers/jobs.js';
import { parse, value } from './helpers/prometheus.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * infer_queue_oldest_age_seconds{queue="interactive"} is "how long
 * the oldest waiting job (its envelope) has waited; 0 when none waits. The
 * figure to alert on" (docs/operations.md). A job whose worker died is put
 * back in `wait` by the stalled check (docs/architecture.md) and waits there
 * for a worker like any other. The queue's `queued` count leaves it out by
 * design (FETCH: "one put back by the stalled check is not counted again"),
 * so the gauge must not follow that count: an envelope put back and not
 * taken (every worker gone or busy) must not read as "nothing waits".
 *
 * The worker's take and the stalled check are done here by hand, exactly as
 * the platform's FETCH script and BullMQ's moveStalledJobsToWait do them
 * (take; lock lapses; LREM active, HINCRBY stc, RPUSH wait), with no worker
 * running to take it again.
 */
describe('metrics: the oldest queued age of a job put back by the stalled check', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
  });

  it('is the age of the envelope waiting in `wait`, not 0', async () => {
    const V = { model: 'mlp', version: '2' };
    const { job } = await postJob(p, { model: 'mlp', version: '2', input: { features: mlpFeatures(1) } });
    const k = interactiveKeys(p.prefix, V.model, V.version);
    // A worker takes it (FETCH), with a short lock...
    const queue = new EnvelopeQueue(redis, { prefix: p.prefix, model: V.model, version: V.version, resultTtlMs: 60_000 });
    const taken = await queue.fetch('dead-worker-token', 200, 8, 8);
    expect(taken).to.not.equal('paused');
    const [envelope] = (taken as { envelopes: Array<{ id: string }> }).envelopes;
    expect(envelope, 'the envelope taken').to.not.equal(undefined);
    // ...and dies: its lock lapses, and the stalled check puts the envelope back in wait.
    await waitUntil(async () => (await redis.exists(`${k.base}${envelope!.id}:lock`)) === 0, 5000, 'the dead worker\'s lock to lapse');
    expect(await redis.lrem(k.active, 1, envelope!.id)).to.equal(1);
    await redis.hincrby(k.base + envelope!.id, 'stc', 1);
    await redis.rpush(k.wait, envelope!.id);
    const status = ((await (await p.api(`/v1/jobs/${job.id}`)).json()) as { status: string }).status;

    const scrape = async () => parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
    const first = value(await scrape(), 'infer_queue_oldest_age_seconds', { ...V, queue: 'interactive' });
    const later = await waitUntil(async () => {
      const s = await scrape();
      const age = value(s, 'infer_queue_oldest_age_seconds', { ...V, queue: 'interactive' });
      return age > 0 ? age : null;
    }, 3000, `the age of the waiting envelope to show (job ${status}; first scrape said ${first} s)`).catch((err: Error) => err);
    if (later instanceof Error) expect.fail(`an envelope waits in \`wait\` for a worker, yet infer_queue_oldest_age_seconds stays 0: ${later.message}`);
  });
});
