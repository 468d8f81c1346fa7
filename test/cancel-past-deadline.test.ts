import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { expectProblem, getJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { elapse } from './helpers/wait.js';

/**
 * docs/api.md, `Cancel-After`: "A job still queued at its deadline ends
 * `canceled` with `error.code` `deadline_exceeded` and never runs ... with no
 * worker running at all, a gateway ends one as it reads it ..., so it never
 * reads `queued` past it." And `POST /v1/jobs/{id}/cancel`: "A job that has
 * already ended (canceled included) is `409 conflict`."
 *
 * So a client's cancel that comes after the deadline of a job nobody has
 * taken finds a job that has ended (deadline_exceeded): 409, and the job
 * keeps its `deadline_exceeded`. The answer must not depend on whether
 * someone happened to GET the job first (a GET ends it at once).
 */
describe('cancel of a queued job past its Cancel-After deadline', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    // No worker: nothing takes the job, and no workers' sweep ends it; only the gateway's reads do.
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  const body = JSON.stringify({ model: 'mlp', version: 1, input: { features: new Array(64).fill(0.25) } });

  async function submitWithDeadline(): Promise<Job> {
    const res = await p.api('/v1/jobs', { method: 'POST', body, headers: { 'cancel-after': '200ms' } });
    expect(res.status).to.equal(202);
    return (await res.json()) as Job;
  }

  it('a GET past the deadline reads the job canceled with deadline_exceeded, and a cancel then is 409', async () => {
    const job = await submitWithDeadline();
    await elapse(400, 'the 200 ms Cancel-After deadline passes while the job is queued');
    const read = await getJob(p, job.id);
    expect(read.status).to.equal('canceled');
    expect(read.error?.code).to.equal('deadline_exceeded');
    await expectProblem(await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' }), 409, 'conflict');
  });

  it('a cancel past the deadline, with no GET before it, is 409 conflict and the job stays deadline_exceeded', async () => {
    const job = await submitWithDeadline();
    await elapse(400, 'the 200 ms Cancel-After deadline passes while the job is queued');
    const res = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    const text = await res.text();
    const after = await getJob(p, job.id);
    expect(after.error?.code, `the job after the cancel: ${JSON.stringify(after.error)}`).to.equal('deadline_exceeded');
    expect(res.status, `cancel after the deadline answered ${res.status} ${text}`).to.equal(409);
  });
});
