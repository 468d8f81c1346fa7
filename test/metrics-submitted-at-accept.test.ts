import { expect } from 'chai';
import { QueueProbe } from './helpers/jobs.js';
import { parse, value } from './helpers/prometheus.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/operations.md: `infer_jobs_submitted_total` counts "jobs accepted",
 * and its `rate(...[1m])` is the documented "jobs/s per version". A job is
 * accepted when its write to the queue returns: it is queued, a worker may
 * run it, and it counts against MAX_QUEUE_DEPTH. A `Prefer: wait` request
 * (up to MAX_WAIT_SECONDS, 600 s at most) must not keep its accepted job out
 * of the counter until the wait ends.
 */
describe('metrics: infer_jobs_submitted_total counts a job when it is accepted, not when a Prefer: wait ends', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let probe: QueueProbe;
  before(async () => {
    // No worker: the job stays queued, so the waiting request is held for its whole wait.
    p = await startPlatform({ worker: false });
    probe = new QueueProbe(TEST_REDIS_URL, p.prefix, [['mlp', '1']]);
  });
  after(async () => {
    await probe?.close();
    await p?.close();
  });

  const submitted = async () => value(parse(await (await p.api('/metrics', { key: null })).text()), 'infer_jobs_submitted_total', { model: 'mlp', version: '1' });

  it('a job queued by a POST still waiting (Prefer: wait=4) is already counted', async () => {
    const before = await submitted();
    const base = (await probe.snapshot()).queued;
    const body = JSON.stringify({ model: 'mlp', version: 1, input: { features: new Array(64).fill(0.25) } });
    const answer = p.api('/v1/jobs', { method: 'POST', body, headers: { prefer: 'wait=4' } });
    try {
      await waitUntil(async () => (await probe.snapshot()).queued > base, 5000, 'the job to be queued');
      const whileWaiting = await submitted();
      expect(whileWaiting - before, 'jobs counted as submitted while the accepted job\'s request still waits').to.equal(1);
    } finally {
      const res = await answer;
      await res.text();
    }
  });
});
