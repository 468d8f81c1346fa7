import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { mlpFeatures, uploadNdjson } from './helpers/batches.js';
import { expectProblem } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { WeightedPicker } from '@infer/model-control';

/**
 * docs/api.md, Routing: unpinned jobs are shared out by the routing
 * "followed exactly over every 100 jobs (interleaved, no randomness) by each
 * gateway"; docs/rollouts.md: "of every 100 unpinned jobs a gateway accepts,
 * exactly 10 go to a version weighted 10".
 */

const ADMIN = 'routing-accepted-admin';

describe('routing: weights over the jobs a gateway accepts', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ env: { ADMIN_API_KEYS: `ops:${ADMIN}`, RATE_LIMIT_PER_SECOND: '1000000', MODEL_POLL_SECONDS: '0' } });
    await waitUntil(async () => {
      const m = (await (await p.api('/v1/models/mlp')).json()) as { versions_detail: Array<{ version: string; state: string }> };
      return m.versions_detail.filter((d) => d.state === 'ready').length === 2;
    }, 20_000, 'mlp 1 and 2 ready');
  });
  after(async () => {
    await p?.close();
  });

  const setRouting = async (weights: Record<string, number>) => {
    const res = await fetch(`${p.baseUrl}/v1/models/mlp/routing`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ weights }),
    });
    expect(res.status, await res.clone().text()).to.equal(200);
  };

  it('a retried POST /v1/jobs with the same Idempotency-Key (a replay, no new job) does not take a share of the routing: 50/50 stays 50/50 over the jobs accepted', async () => {
    await setRouting({ '1': 50, '2': 50 });
    const counts: Record<string, number> = {};
    for (let i = 0; i < 40; i++) {
      const key = `routing-accepted-${i}-${Date.now()}`;
      const body = JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } });
      const first = await p.api('/v1/jobs', { method: 'POST', headers: { 'idempotency-key': key }, body });
      expect(first.status).to.equal(202);
      const job = (await first.json()) as Job;
      counts[job.version] = (counts[job.version] ?? 0) + 1;
      // The client's retry (a lost reply, the SDK's retry): answered with the same job, nothing new accepted.
      const again = await p.api('/v1/jobs', { method: 'POST', headers: { 'idempotency-key': key }, body });
      expect(again.status).to.be.oneOf([200, 202]);
      expect(((await again.json()) as Job).id).to.equal(job.id);
    }
    expect(counts, 'versions of the 40 jobs accepted under a 50/50 routing').to.deep.equal({ '1': 20, '2': 20 });
  });

  it('a refused POST /v1/jobs (422: its input does not fit the model) does not take a share of the routing: 50/50 stays 50/50 over the jobs accepted', async () => {
    await setRouting({ '1': 50, '2': 50 });
    const counts: Record<string, number> = {};
    for (let i = 0; i < 40; i++) {
      const ok = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });
      expect(ok.status).to.equal(202);
      const job = (await ok.json()) as Job;
      counts[job.version] = (counts[job.version] ?? 0) + 1;
      // A client's bad request in between: refused, no job.
      const bad = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: [1, 2, 3] } }) });
      expect(bad.status).to.equal(422);
      await bad.body?.cancel();
    }
    expect(counts, 'versions of the 40 jobs accepted under a 50/50 routing').to.deep.equal({ '1': 20, '2': 20 });
  });

  it('a refused unpinned POST /v1/batches (422 before its items, 400 with none) does not take a share: 50/50 stays 50/50 over the jobs accepted', async () => {
    await setRouting({ '1': 50, '2': 50 });
    const counts: Record<string, number> = {};
    for (let i = 0; i < 20; i++) {
      const ok = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });
      expect(ok.status).to.equal(202);
      const job = (await ok.json()) as Job;
      counts[job.version] = (counts[job.version] ?? 0) + 1;
      // Refused while prepared (its webhook is no URL), or once its upload is read (no items): nothing accepted.
      const refused =
        i % 2 === 0
          ? await p.api('/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'mlp', webhook: 'not a url', items: [{ input: { features: mlpFeatures(i) } }] }) })
          : await uploadNdjson(p, '\n');
      await expectProblem(refused, i % 2 === 0 ? 422 : 400, i % 2 === 0 ? 'webhook_url_not_allowed' : 'invalid_input');
    }
    expect(counts, 'versions of the 20 jobs accepted under a 50/50 routing').to.deep.equal({ '1': 10, '2': 10 });
  });
});

describe('routing: WeightedPicker.unpick', () => {
  it('a pick given back leaves the round as if it had never been made, whatever was picked since', () => {
    const weights = { '1': 10, '2': 30, '3': 60 };
    const plain = new WeightedPicker();
    const withUndo = new WeightedPicker();
    const kept: string[] = [];
    const expected: string[] = [];
    for (let i = 0; i < 300; i++) expected.push(plain.pick(weights)!);
    // Every third pick is given back: alternately at once, and after the next pick has been made.
    let owed: string | undefined;
    for (let i = 0; kept.length < 300; i++) {
      const v = withUndo.pick(weights)!;
      if (owed !== undefined) {
        withUndo.unpick(owed);
        owed = undefined;
      }
      if (i % 3 !== 2) kept.push(v);
      else if (i % 2 === 0) withUndo.unpick(v);
      else owed = v;
    }
    const count = (xs: string[]) => xs.reduce<Record<string, number>>((c, v) => ((c[v] = (c[v] ?? 0) + 1), c), {});
    expect(count(kept)).to.deep.equal(count(expected));
    expect(count(kept)).to.deep.equal({ '1': 30, '2': 90, '3': 180 });
  });

  it('a version the weights no longer name is not given back (a new round)', () => {
    const picker = new WeightedPicker();
    picker.pick({ '1': 50, '2': 50 });
    picker.pick({ '3': 100 });
    picker.unpick('1');
    expect(Array.from({ length: 4 }, () => picker.pick({ '3': 100 }))).to.deep.equal(['3', '3', '3', '3']);
  });
});
