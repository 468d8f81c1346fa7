import { expect } from 'chai';
import { postJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { parse, value } from './helpers/prometheus.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/operations.md: `infer_queue_oldest_age_seconds` is "how long the
 * oldest waiting job (its envelope) or bulk chunk has waited; 0 when none
 * waits. The figure to alert on", and the suggested scale-out rule is
 * `max by (model, version) (infer_queue_oldest_age_seconds{queue="interactive"}) > 30`.
 * A job canceled while queued leaves the queued count (`infer_queue_depth`
 * goes to 0), but its envelope stays in the queue's `wait` list until a
 * worker takes it, and the gauge reads the age of whatever envelope is
 * oldest there: with no worker taking it (a version scaled to zero), the
 * "oldest waiting job" of a queue where nothing waits grows without end,
 * and the alert fires for jobs that were canceled.
 */
describe('the oldest queued age counts only jobs that still wait', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  const scrape = async () => parse(await (await fetch(`${p.baseUrl}/metrics`)).text());

  it('is 0 once the only queued job has been canceled', async () => {
    const { res, job } = await postJob(p, { model: 'mlp', version: 2, input: { features: new Array(64).fill(0.5) } });
    expect(res.status).to.equal(202);
    const labels = { model: 'mlp', version: '2' };
    // While it waits, it is counted and it ages: the gauge works.
    await waitUntil(async () => value(await scrape(), 'infer_queue_oldest_age_seconds', { ...labels, queue: 'interactive' }) > 0, 5000, 'the queued job to age');

    expect((await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' })).status).to.equal(200);
    const s = await scrape();
    expect(value(s, 'infer_queue_depth', labels), 'nothing queued').to.equal(0);
    expect(value(s, 'infer_queue_oldest_age_seconds', { ...labels, queue: 'interactive' }), 'the age of the oldest job waiting, with none waiting').to.equal(0);
  });
});
