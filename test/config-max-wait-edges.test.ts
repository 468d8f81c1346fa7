import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { mlpFeatures } from './helpers/batches.js';

/**
 * MAX_WAIT_SECONDS at its edges (README: "the longest Prefer: wait=N
 * honoured (1–600)"; docs/api.md: N is capped at it, a bare `wait` means
 * the cap, Preference-Applied says the seconds waited for at most).
 */
const body = JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(4) } });

describe('config: MAX_WAIT_SECONDS at 1 and 600', function () {
  this.timeout(90_000);

  describe('MAX_WAIT_SECONDS=1, no worker', () => {
    let p: TestPlatform;
    before(async () => {
      p = await startPlatform({ worker: false, env: { MAX_WAIT_SECONDS: '1' } });
    });
    after(() => p?.close());

    for (const prefer of ['wait=30', 'wait']) {
      it(`POST with Prefer: ${prefer} answers 202 after about 1 s, Preference-Applied: wait=1; a GET long poll too`, async () => {
        const t0 = performance.now();
        const res = await p.api('/v1/jobs', { method: 'POST', body, headers: { prefer } });
        const job = (await res.json()) as { id: string; status: string };
        const ms = performance.now() - t0;
        expect({ status: res.status, applied: res.headers.get('preference-applied'), jobStatus: job.status }).to.deep.equal({ status: 202, applied: 'wait=1', jobStatus: 'queued' });
        expect(ms).to.be.within(900, 6000);
        const t1 = performance.now();
        const get = await p.api(`/v1/jobs/${job.id}`, { headers: { prefer } });
        await get.arrayBuffer();
        expect({ status: get.status, applied: get.headers.get('preference-applied') }).to.deep.equal({ status: 200, applied: 'wait=1' });
        expect(performance.now() - t1).to.be.within(900, 6000);
      });
    }
  });

  describe('MAX_WAIT_SECONDS=600, with a worker', () => {
    let p: TestPlatform;
    before(async () => {
      p = await startPlatform({ env: { MAX_WAIT_SECONDS: '600' } });
    });
    after(() => p?.close());

    for (const [prefer, applied] of [
      ['wait', 'wait=600'],
      ['wait=600', 'wait=600'],
      ['wait=100000', 'wait=600'],
      ['wait=599.5', 'wait=600'],
    ] as const) {
      it(`Prefer: ${prefer} is honoured up to 600 s (Preference-Applied: ${applied}) and answers once the job ends`, async () => {
        const res = await p.api('/v1/jobs', { method: 'POST', body, headers: { prefer } });
        const job = (await res.json()) as { status: string };
        expect({ status: res.status, applied: res.headers.get('preference-applied'), jobStatus: job.status }).to.deep.equal({ status: 200, applied, jobStatus: 'succeeded' });
      });
    }
  });
});
