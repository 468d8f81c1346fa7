/**
 * `Prefer: wait` above 60 s. The gateway honours up to
 * MAX_WAIT_SECONDS, which an operator may set from 1 to 600 (README,
 * "Configuration"; docs/api.md: "N is capped at MAX_WAIT_SECONDS"). The SDK
 * sends the wait asked for (cut only to 600, the most any gateway honours),
 * so on a gateway set to 120, `get(id, { wait: 90 })` is a 90 s long poll.
 */
import { expect } from 'chai';
import { InferClient } from '@infer/sdk';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

describe('sdk: a long poll above 60 s on a gateway whose MAX_WAIT_SECONDS allows it', function () {
  this.timeout(30_000);
  let p: TestPlatform | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('jobs.get(id, { wait: 90 }) asks the gateway (MAX_WAIT_SECONDS=120) for 90 s, and the gateway grants 90', async () => {
    p = await startPlatform({ worker: false, env: { MAX_WAIT_SECONDS: '120' } });
    const sent: string[] = [];
    const applied: string[] = [];
    const client = new InferClient({
      baseUrl: p.baseUrl,
      apiKey: TEST_KEY,
      fetch: async (input, init) => {
        const prefer = new Headers(init?.headers).get('prefer');
        if (prefer) sent.push(prefer);
        const res = await fetch(input, init);
        const pa = res.headers.get('preference-applied');
        if (pa) applied.push(pa);
        return res;
      },
    });
    const job = await client.jobs.create({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }); // queued: no worker
    const poll = client.jobs.get(job.id, { wait: 90 });
    await waitUntil(() => sent.length === 1, 5000, 'the long poll to be sent');
    // End the job so that the long poll answers at once, whatever it asked for.
    await new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY }).jobs.cancel(job.id);
    expect((await poll).status).to.equal('canceled');
    expect(sent, 'Prefer sent').to.deep.equal(['wait=90']);
    expect(applied, 'Preference-Applied answered').to.deep.equal(['wait=90']);
  });
});
