import { expect } from 'chai';
import { mlpFeatures } from './helpers/batches.js';
import { parse } from './helpers/prometheus.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * Nothing a client sends may become a label value. Model names and
 * versions a client makes up, ids, query strings and paths must not add
 * series to the gateway's /metrics (a series per made-up value is a
 * cardinality blowup any client could cause).
 */
describe('metrics: client-chosen values never become label values', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: 'ops:review-admin-key' } });
  });
  after(async () => {
    await p?.close();
  });

  it('unknown models and versions, ids and odd paths add no series', async () => {
    const before = parse(await (await fetch(`${p.baseUrl}/metrics`)).text()).length;
    const tok = (i: number) => `zz${i}qq`;
    const sends: Promise<Response>[] = [];
    for (let i = 0; i < 12; i++) {
      sends.push(p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: tok(i), input: { features: mlpFeatures(i) } }) }));
      sends.push(p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: tok(100 + i), input: { features: mlpFeatures(i) } }) }));
      sends.push(p.api(`/v1/batches?model=${tok(200 + i)}`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: '{"input":{}}\n' }));
      sends.push(p.api(`/v1/models/${tok(300 + i)}`));
      sends.push(p.api(`/v1/models/mlp/versions/${tok(400 + i)}`));
      sends.push(p.api(`/v1/jobs/${tok(500 + i)}`));
      sends.push(p.api(`/v1/jobs/${tok(600 + i)}/cancel`, { method: 'POST' }));
      sends.push(p.api(`/v1/batches/${tok(700 + i)}/results`));
      sends.push(p.api(`/${tok(800 + i)}/x?${tok(900 + i)}=1`));
      sends.push(p.api(`/v1/models/${tok(1000 + i)}/routing`, { key: 'review-admin-key' }));
      sends.push(p.api(`/admin/queues/api/queues/${tok(1100 + i)}`, { key: 'review-admin-key' }));
      sends.push(p.api(`/v1/jobs/${tok(1200 + i)}/webhook_deliveries`));
    }
    for (const r of await Promise.all(sends)) await r.body?.cancel();
    const after = parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
    const leaked = after.filter((s) => Object.values(s.labels).some((v) => /zz\d+qq/.test(v)));
    expect(leaked.map((s) => `${s.name}${JSON.stringify(s.labels)}`), 'series labelled with client-chosen values').to.deep.equal([]);
    // A handful of new (method, route, status) series at most, not one per request.
    expect(after.length - before, 'new series from 144 requests of 12 kinds').to.be.below(12 * 20);
  });
});
