import { expect } from 'chai';
import { mlpFeatures } from './helpers/batches.js';
import { getJob } from './helpers/jobs.js';
import { parse, value, type Sample } from './helpers/prometheus.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A job still queued at its Cancel-After deadline ends canceled `deadline_exceeded`, by the workers'
 * sweep or by a gateway that reads it past the deadline (JobService.pastDeadline, and watchDeadline for
 * a `Prefer: wait`). The gateway counts the ends it commits in `infer_jobs_ended_total`, as the worker
 * counts its own: none is missing from the figures.
 */
describe('metrics: jobs a gateway ends at their Cancel-After deadline are counted', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  const MLP = { model: 'mlp', version: '2' };

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  const scrape = async (url: string): Promise<Sample[]> => parse(await (await fetch(url)).text());

  it('a job ended canceled (deadline_exceeded) by the gateway, read past its deadline, is in infer_jobs_ended_total{status="canceled"} on the gateway or a worker', async () => {
    // No worker: the job stays queued until its deadline; the client waits on it (Prefer: wait), so the gateway ends it.
    const res = await p.api('/v1/jobs', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(1) } }),
      headers: { 'cancel-after': '300ms', prefer: 'wait=5' },
    });
    const job = (await res.json()) as { id: string; status: string; error: { code: string } | null };
    expect(res.status, JSON.stringify(job)).to.equal(200);
    expect(job.status).to.equal('canceled');
    expect(job.error?.code).to.equal('deadline_exceeded');

    // A second one, read with a plain GET after its deadline.
    const second = await p.api('/v1/jobs', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(2) } }),
      headers: { 'cancel-after': '100ms' },
    });
    expect(second.status).to.equal(202);
    const secondId = ((await second.json()) as { id: string }).id;
    const ended = await waitUntil(async () => {
      const j = await getJob(p, secondId);
      return j.status === 'canceled' ? j : null;
    }, 10_000, 'the second job read past its deadline');
    expect(ended.error?.code).to.equal('deadline_exceeded');

    // A worker comes (workers "count every other end"): the jobs have ended already, it has nothing to count.
    const worker = await p.startWorker();
    await worker.lookAtModels();
    const g = await scrape(`${p.baseUrl}/metrics`);
    const w = await scrape(`http://127.0.0.1:${worker.metricsPort}/metrics`);
    const canceled = value(g, 'infer_jobs_ended_total', { ...MLP, status: 'canceled' }) + value(w, 'infer_jobs_ended_total', { ...MLP, status: 'canceled' });
    expect(value(g, 'infer_jobs_submitted_total', MLP), 'submitted').to.equal(2);
    expect(canceled, 'the two deadline_exceeded ends, counted by the gateway or the worker (submitted 2, ended 0 anywhere)').to.equal(2);
  });
});
