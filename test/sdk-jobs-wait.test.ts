/**
 * jobs.wait against a real gateway, behind a proxy
 * that strips `Prefer` (docs/sdk.md: "one that answers well before the wait
 * it granted ... gets a pause that grows to 5 s between polls"), and aborted
 * by its signal in the middle of a long poll.
 */
import { expect } from 'chai';
import { InferClient, isJobEnded } from '@infer/sdk';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const features = new Array(64).fill(0.25);

describe('sdk: jobs.wait', function () {
  this.timeout(40_000);
  let p: TestPlatform | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('behind a proxy that strips Prefer: polls with a growing pause (no busy loop) and answers once the job ends', async () => {
    p = await startPlatform({ worker: false });
    let gets = 0;
    const stripping = new InferClient({
      baseUrl: p.baseUrl,
      apiKey: TEST_KEY,
      fetch: (input, init) => {
        const headers = new Headers(init?.headers);
        headers.delete('prefer');
        if ((init?.method ?? 'GET') === 'GET') gets++;
        return fetch(input, { ...init, headers });
      },
    });
    const job = await stripping.jobs.create({ model: 'mlp', input: { features } });
    const waited = stripping.jobs.wait(job.id, { timeoutMs: 30_000 });
    await waitUntil(() => gets >= 3, 10_000, 'three polls'); // 0, 250, 750 ms
    const pollsBefore = gets;
    expect(pollsBefore, 'polls in the first moments').to.be.below(6);
    await p.startWorker();
    const ended = await waited;
    expect(isJobEnded(ended)).to.equal(true);
    expect(ended.status).to.equal('succeeded');
  });

  it('an abort in the middle of a long poll rejects with the reason at once', async () => {
    p = await startPlatform({ worker: false });
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    let sent = 0;
    const counting = new InferClient({
      baseUrl: p.baseUrl,
      apiKey: TEST_KEY,
      fetch: (input, init) => {
        sent++;
        return fetch(input, init);
      },
    });
    const job = await client.jobs.create({ model: 'mlp', input: { features } });
    const controller = new AbortController();
    const waited = counting.jobs.wait(job.id, { signal: controller.signal }).catch((e: unknown) => e);
    await waitUntil(() => sent === 1, 5000, 'the long poll');
    const reason = new Error('user left');
    const t0 = Date.now();
    controller.abort(reason);
    expect(await waited).to.equal(reason);
    expect(Date.now() - t0).to.be.below(1000);
    // The job goes on.
    expect((await client.jobs.get(job.id)).status).to.equal('queued');
  });
});
