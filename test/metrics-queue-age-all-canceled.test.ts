import { expect } from 'chai';
import { mlpFeatures } from './helpers/batches.js';
import { parse, value } from './helpers/prometheus.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/operations.md: infer_queue_oldest_age_seconds is "how long the oldest
 * waiting job has waited; 0 when none waits", and the suggested alert is
 * `infer_queue_oldest_age_seconds{queue="interactive"} > 30`. OLDEST_WAITING
 * looks at most OLDEST_WAITING_LOOKS (64) envelopes past those whose jobs
 * were all canceled. A burst of canceled jobs longer than that (the fleet
 * scaled to zero while the gateways' deadline sweep ends a burst of jobs
 * past their Cancel-After) leaves more canceled envelopes in `wait` than it
 * looks at: with none of them waiting (infer_queue_depth 0), the age is 0,
 * not the age of a canceled envelope growing until the alert fires.
 */
describe('metrics: the oldest queued age once every queued job was canceled', function () {
  this.timeout(90_000);
  let p: TestPlatform | undefined;

  after(async () => {
    await p?.close();
  });

  it('is 0 when no job waits, however many canceled envelopes wait for a worker to skip them', async () => {
    p = await startPlatform({ worker: false });
    const V = { model: 'mlp', version: '2' };
    const ids: string[] = [];
    // One envelope each (one request a turn of the event loop): more than OLDEST_WAITING_LOOKS of them.
    for (let i = 0; i < 70; i++) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(i) } }) });
      expect(res.status, await res.clone().text()).to.equal(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    for (const id of ids) {
      const res = await p.api(`/v1/jobs/${id}/cancel`, { method: 'POST' });
      expect(res.status, await res.clone().text()).to.equal(200);
    }
    const scrape = async () => parse(await (await fetch(`${p!.baseUrl}/metrics`)).text());
    // Let a second pass so that a stale age would read > 0.
    const since = Date.now();
    await waitUntil(() => Date.now() - since > 1100, 5_000, 'a second to pass');
    const s = await waitUntil(async () => {
      const m = await scrape();
      return value(m, 'infer_queue_depth', V) === 0 ? m : null;
    }, 10_000, 'the depth to read 0');
    expect(value(s, 'infer_queue_depth', V), 'nothing is queued').to.equal(0);
    expect(value(s, 'infer_queue_oldest_age_seconds', { ...V, queue: 'interactive' }), 'infer_queue_oldest_age_seconds with no job waiting').to.equal(0);
  });
});
