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
 * and the alert fires for jobs that were canceled. The same holds for a
 * canceled job's envelope ahead of one that still waits.
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

  it('skips a canceled job ahead of one that waits: the age is the waiting job\'s, not the canceled one\'s', async () => {
    const body = { model: 'mlp', version: 2, input: { features: new Array(64).fill(0.5) } };
    const labels = { model: 'mlp', version: '2', queue: 'interactive' };
    const first = await postJob(p, body);
    expect(first.res.status).to.equal(202);
    // Let the first job age well past what the second will have when scraped.
    await waitUntil(async () => value(await scrape(), 'infer_queue_oldest_age_seconds', labels) >= 3, 10_000, 'the first job to be 3 s old');

    const secondAt = Date.now();
    const second = await postJob(p, body);
    expect(second.res.status).to.equal(202);
    expect((await p.api(`/v1/jobs/${first.job.id}/cancel`, { method: 'POST' })).status).to.equal(200);

    const s = await scrape();
    const bound = (Date.now() - secondAt) / 1000 + 0.5;
    expect(value(s, 'infer_queue_depth', { model: 'mlp', version: '2' }), 'one job queued').to.equal(1);
    const age = value(s, 'infer_queue_oldest_age_seconds', labels);
    expect(age, `age of the only waiting job (submitted ${bound.toFixed(2)} s ago at most); got the canceled job's age`).to.be.at.most(bound);
  });
});
