/**
 * docs/sdk.md, Jobs: "`create(body, { wait: N })` ... (at most 60,
 * `MAX_WAIT_SECONDS`; a gateway may be set to cap it lower)" and "`wait(id)`
 * chains such long polls until the job has ended, so it answers the moment
 * the job ends and sends nothing while nothing changes".
 *
 * On a gateway with MAX_WAIT_SECONDS below 60 every long poll is answered
 * at the cap (with `Preference-Applied: wait=<cap>`). An answer that came
 * before half the wait asked for is no proxy stripping `Prefer` when the
 * header says the wait was capped: wait() must poll again at once, not
 * sleep 250 ms, 500 ms, … up to 5 s with no request open, which would see a
 * job that ends meanwhile only seconds later.
 */
import { expect } from 'chai';
import { InferClient, type Job } from '@infer/sdk';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

describe('sdk: jobs.wait on a gateway that caps Prefer: wait below 60 s (MAX_WAIT_SECONDS=1)', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    // No worker: the job stays queued until the test cancels it.
    p = await startPlatform({ worker: false, env: { MAX_WAIT_SECONDS: '1' } });
  });
  after(async () => {
    await p?.close();
  });

  it('answers within a moment of the job ending, however many capped long polls came before', async () => {
    let answers = 0;
    let fourthAnswered!: () => void;
    const fourth = new Promise<void>((resolve) => (fourthAnswered = resolve));
    const applied: Array<string | null> = [];
    const counting: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if ((init?.method ?? 'GET') === 'GET') {
        applied.push(res.headers.get('preference-applied'));
        if (++answers === 4) fourthAnswered();
      }
      return res;
    };
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY, fetch: counting });
    const job = await client.jobs.create({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });

    const waiting = client.jobs.wait(job.id, { timeoutMs: 40_000 });
    let endedAt = 0;
    const ended = waiting.then((j: Job) => ((endedAt = Date.now()), j));
    // Four capped long polls answered (each honoured: Preference-Applied: wait=1), the job still queued.
    await fourth;
    expect(applied.slice(0, 4)).to.deep.equal(['wait=1', 'wait=1', 'wait=1', 'wait=1']);
    const canceledAt = Date.now();
    const res = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(res.status).to.equal(200);

    const final = await ended;
    expect(final.status).to.equal('canceled');
    // A long poll open at the cancel answers at once; a wait() that took the capped answers for a proxy's would be asleep for 2 s (a back-off after the 4th poll).
    expect(endedAt - canceledAt, 'ms from the job ending to wait() answering').to.be.below(700);
  });
});
