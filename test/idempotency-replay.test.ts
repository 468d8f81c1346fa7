import { expect } from 'chai';
import { Redis } from 'ioredis';
import { WorkerHeartbeat } from '@infer/fleet';
import { expectProblem } from './helpers/jobs.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

const body = JSON.stringify({ model: 'mlp', version: 1, input: { features: new Array(64).fill(0.25) } });

/**
 * A replay answers the job the first request made, whatever the fleet serves
 * now: the version's readiness (503 when live workers exist and none serves
 * it) is asked of new jobs only. And a submit refused so gives its
 * Idempotency-Key back: the same key is a new job once the version is served.
 */
describe('Idempotency-Key replays while no worker serves the version', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let redis: Redis;
  let ghost: WorkerHeartbeat | undefined;
  before(async () => {
    p = await startPlatform({ worker: false });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    await ghost?.stop();
    redis.disconnect();
    await p.close();
  });

  const post = (key: string) => p.api('/v1/jobs', { method: 'POST', body, headers: { 'idempotency-key': key } });

  it('replays an ended job (200, the same job) and refuses a new one (503); the refused key is free afterwards', async () => {
    // No live worker at all: the job queues, and is canceled (ended) without one.
    const first = await post('ended-job');
    expect(first.status).to.equal(202);
    const job = (await first.json()) as { id: string };
    const canceled = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(canceled.status).to.equal(200);

    // A live worker that serves only ocr-cls: mlp's jobs would wait in a queue nobody reads.
    ghost = new WorkerHeartbeat(redis, p.prefix, 'ghost', () => [{ model: 'ocr-cls', version: '1', state: 'ready' }]);
    await ghost.start();
    await p.gateway.catalog.refresh();
    await expectProblem(await post('refused'), 503, 'unavailable');

    const again = await post('ended-job');
    expect(again.status).to.equal(200);
    expect(again.headers.get('idempotent-replayed')).to.equal('true');
    expect(await again.json()).to.deep.include({ id: job.id, status: 'canceled' });

    // The worker leaves: the refused request's key makes a new job at once (it was let go, not left claimed).
    await ghost.stop();
    ghost = undefined;
    await p.gateway.catalog.refresh();
    const retried = await post('refused');
    expect(retried.status).to.equal(202);
    expect(retried.headers.get('idempotent-replayed')).to.equal(null);
  });
});
