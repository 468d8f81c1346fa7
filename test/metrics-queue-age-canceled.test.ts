import { expect } from 'chai';
import { postJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { parse, value } from './helpers/prometheus.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/operations.md: `infer_queue_oldest_age_seconds` is "how long the
 * oldest waiting job (its envelope) or bulk chunk has waited; 0 when none
 * waits. The figure to alert on: depth says how much, age says whether it
 * moves". A job canceled while queued is no longer waiting. With an older
 * canceled job's envelope still in the queue's `wait` list and a newer job
 * still queued, the gauge must give the newer job's age, not the canceled
 * one's (the fix for "nothing queued" reads 0, but only when the queue is empty).
 */
describe('metrics: the oldest queued age skips a canceled job ahead of a waiting one', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  const scrape = async () => parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
  const labels = { model: 'mlp', version: '2', queue: 'interactive' };
  const body = { model: 'mlp', version: 2, input: { features: new Array(64).fill(0.5) } };

  it('reports the age of the job that still waits, not of the canceled one before it', async () => {
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
