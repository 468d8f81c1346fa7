import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { mlpFeatures } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Every stamp of a job is on one clock, Redis's, read by each process as its
 * own plus a measured offset (platformNow): created_at and the Cancel-After
 * deadline (the gateway's reading), started_at (the take's stamp: the time
 * the worker sent its take, or the envelope's enqueue time if later) and
 * completed_at (the worker's reading). Redis usually runs on a host of its
 * own, and its clock may be ahead of the app hosts': were some stamps read
 * on Redis's clock and others on a host's own, an idle worker's jobs would
 * read completed_at before started_at, queue_ms would be the skew, and a
 * job taken well within its Cancel-After deadline would end
 * `deadline_exceeded`. (test/clock-skew covers hosts that differ from each
 * other.)
 *
 * The skew is simulated by running this process's clock (gateway and worker
 * alike: one app clock) 1 s behind Redis's: Date.now is shifted before the
 * platform starts (which measures the offset) and restored once it has
 * closed; timers use the monotonic clock.
 */
const SKEW_MS = 1000;

describe('envelopes: an idle worker\'s take and a Redis whose clock runs ahead', function () {
  this.timeout(60_000);
  let p: TestPlatform | undefined;
  const realNow = Date.now;

  before(async () => {
    Date.now = () => realNow() - SKEW_MS;
    p = await startPlatform();
    // Warm the model up and leave the worker idle on its blocking take.
    const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(0) } }) });
    expect(res.status).to.equal(200);
  });
  after(async () => {
    try {
      await p?.close();
    } finally {
      Date.now = realNow;
    }
  });

  /** Submit to the idle worker, which takes it behind its blocking read. */
  async function submitSkewed(headers: Record<string, string> = {}): Promise<Job> {
    // Let the worker go back to blocking on the marker after the previous job.
    const settled = realNow() + 300;
    await waitUntil(() => realNow() > settled, 5_000, 'a moment for the worker to block again');
    const res = await p!.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20', ...headers }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(3) } }) });
    expect(res.status, await res.clone().text()).to.equal(200);
    return (await res.json()) as Job;
  }

  it('started_at is not after completed_at, and queue_ms is not the clock skew', async () => {
    const job = await submitSkewed();
    expect(job.status, JSON.stringify(job.error)).to.equal('succeeded');
    const started = Date.parse(job.started_at!);
    const completed = Date.parse(job.completed_at!);
    const created = Date.parse(job.created_at);
    expect(started - created, 'started_at - created_at on an idle worker').to.be.below(SKEW_MS / 2);
    expect(completed, `completed_at ${job.completed_at} vs started_at ${job.started_at}`).to.be.at.least(started);
    expect(job.metrics?.queue_ms ?? 0, 'queue_ms of a job an idle worker took at once').to.be.below(SKEW_MS / 2);
  });

  it('a job an idle worker takes at once, well within its Cancel-After deadline, runs', async () => {
    const job = await submitSkewed({ 'cancel-after': '500ms' });
    expect(job.status, `taken at once by an idle worker, yet ended ${job.status} (${JSON.stringify(job.error)})`).to.equal('succeeded');
  });
});
