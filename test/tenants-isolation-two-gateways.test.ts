import { expect } from 'chai';
import type { Batch, Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * tenant isolation on every route that reads or acts on a job, a batch, its results or its webhook
 * deliveries, with the owner on one gateway and the other tenant on another (docs/api.md "Tenants": another
 * tenant's id answers 404 with the same code and body as an id that never existed).
 */

const call = (base: string, key: string, path: string, init: RequestInit = {}) =>
  fetch(base + path, { ...init, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });

async function answer(res: Response): Promise<{ status: number; type: string | null; body: string }> {
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

describe('tenants: another tenant’s ended job, batch, results and deliveries, across two gateways', function () {
  this.timeout(120_000);
  let p: TestPlatform;
  let second: Gateway;
  let g2: string;
  let hook: WebhookReceiver;

  before(async () => {
    hook = await startWebhookReceiver();
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50,100' } });
    second = await createGateway(p.config, silentLogger);
    g2 = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await second?.close();
    await p?.close();
    await hook?.close();
  });

  it('every read and action by tenant B on tenant A’s ids is byte-for-byte the 404 of an unknown id, and changes nothing', async () => {
    // Tenant A: a job and a batch with webhooks, on gateway 1; both end and both deliveries succeed.
    const jobRes = await call(p.baseUrl, TEST_KEY, '/v1/jobs', {
      method: 'POST',
      headers: { prefer: 'wait=20' },
      body: JSON.stringify({ model: 'mlp', version: 2, input: { features: mlpFeatures(1) }, webhook: hook.url }),
    });
    expect(jobRes.status).to.equal(200);
    const job = (await jobRes.json()) as Job;
    const batchRes = await call(p.baseUrl, TEST_KEY, '/v1/batches', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', version: 2, webhook: hook.url, items: [{ custom_id: 'a', input: { features: mlpFeatures(2) } }] }),
    });
    expect(batchRes.status).to.equal(202);
    const batch = (await batchRes.json()) as Batch;
    await waitUntil(async () => ((await (await call(p.baseUrl, TEST_KEY, `/v1/batches/${batch.id}`)).json()) as Batch).status === 'completed', 30_000, 'batch completed');
    const deliveries = async (kind: 'jobs' | 'batches', id: string) =>
      ((await (await call(p.baseUrl, TEST_KEY, `/v1/${kind}/${id}/webhook_deliveries`)).json()) as { data: Array<{ id: string; state: string; attempt_count: number }> }).data;
    const [jobEvent] = await waitUntil(async () => {
      const d = await deliveries('jobs', job.id);
      return d.length === 1 && d[0]!.state === 'succeeded' ? d : undefined;
    }, 20_000, 'job delivery');
    const [batchEvent] = await waitUntil(async () => {
      const d = await deliveries('batches', batch.id);
      return d.length === 1 && d[0]!.state === 'succeeded' ? d : undefined;
    }, 20_000, 'batch delivery');

    const neverJob = `${job.id.slice(0, 8)}${'B'.repeat(22)}`;
    const neverBatch = '00000000-0000-4000-8000-000000000000';
    const neverEvent = `msg_${'0'.repeat(32)}`;
    const cases: Array<[string, string, string, string, string?]> = [
      ['GET', `/v1/jobs/${job.id}`, job.id, neverJob],
      ['HEAD', `/v1/jobs/${job.id}`, job.id, neverJob],
      ['POST', `/v1/jobs/${job.id}/cancel`, job.id, neverJob],
      ['GET', `/v1/jobs/${job.id}/webhook_deliveries`, job.id, neverJob],
      ['GET', `/v1/batches/${batch.id}`, batch.id, neverBatch],
      ['GET', `/v1/batches/${batch.id}/results`, batch.id, neverBatch],
      ['POST', `/v1/batches/${batch.id}/cancel`, batch.id, neverBatch],
      ['GET', `/v1/batches/${batch.id}/webhook_deliveries`, batch.id, neverBatch],
      ['GET', `/v1/webhook_deliveries/${jobEvent!.id}`, jobEvent!.id, neverEvent],
      ['POST', `/v1/webhook_deliveries/${jobEvent!.id}/resend`, jobEvent!.id, neverEvent],
      ['GET', `/v1/webhook_deliveries/${batchEvent!.id}`, batchEvent!.id, neverEvent],
      ['POST', `/v1/webhook_deliveries/${batchEvent!.id}/resend`, batchEvent!.id, neverEvent],
      ['GET', `/v1/batches?after=${batch.id}`, batch.id, neverBatch],
    ];
    for (const [method, path, theirs, never] of cases) {
      for (const base of [p.baseUrl, g2]) {
        const a = await answer(await call(base, OTHER_TENANT_KEY, path, { method }));
        const b = await answer(await call(base, OTHER_TENANT_KEY, path.replace(theirs, never), { method }));
        const what = `${method} ${path} on ${base === g2 ? 'gateway 2' : 'gateway 1'}`;
        expect(a.status, `${what}: ${a.body}`).to.be.oneOf([400, 404]);
        expect({ ...a, body: a.body.replaceAll(theirs, '<id>') }, what).to.deep.equal({ ...b, body: b.body.replaceAll(never, '<id>') });
      }
    }
    // B's lists show nothing of A's.
    const list = (await (await call(g2, OTHER_TENANT_KEY, '/v1/batches')).json()) as { data: Batch[] };
    expect(list.data.map((x) => x.id)).to.not.include(batch.id);
    // Nothing of A's moved: the job and batch as they were, each delivery sent once, not resent.
    expect(((await (await call(p.baseUrl, TEST_KEY, `/v1/jobs/${job.id}`)).json()) as Job).status).to.equal('succeeded');
    expect(((await (await call(p.baseUrl, TEST_KEY, `/v1/batches/${batch.id}`)).json()) as Batch).status).to.equal('completed');
    for (const [kind, id] of [['jobs', job.id], ['batches', batch.id]] as const) {
      const d = await deliveries(kind, id);
      expect(d.map((x) => [x.state, x.attempt_count]), kind).to.deep.equal([['succeeded', 1]]);
    }
    expect(hook.deliveries.length).to.equal(2);
  });

  it('the same Idempotency-Key from two tenants at once, over both gateways, makes one job per tenant and never answers one with the other’s', async () => {
    const key = `review-shared-${Date.now()}`;
    const send = (base: string, apiKey: string, i: number) =>
      call(base, apiKey, '/v1/jobs', { method: 'POST', headers: { 'idempotency-key': key }, body: JSON.stringify({ model: 'mlp', version: 2, input: { features: mlpFeatures(100 + i) } }) });
    const reqs = Array.from({ length: 12 }, (_, i) => ({ tenant: i % 2 ? 'a' : 'b', res: send(i % 4 < 2 ? p.baseUrl : g2, i % 2 ? TEST_KEY : OTHER_TENANT_KEY, i) }));
    const got = await Promise.all(reqs.map(async (r) => ({ tenant: r.tenant, status: (await r.res).status, job: (await (await r.res).json()) as Job })));
    for (const g of got) expect(g.status, JSON.stringify(g.job)).to.be.oneOf([200, 202]);
    const idsA = new Set(got.filter((g) => g.tenant === 'a').map((g) => g.job.id));
    const idsB = new Set(got.filter((g) => g.tenant === 'b').map((g) => g.job.id));
    expect(idsA.size, 'one job for tenant a').to.equal(1);
    expect(idsB.size, 'one job for tenant b').to.equal(1);
    const [a] = [...idsA];
    const [b] = [...idsB];
    expect(a).to.not.equal(b);
    expect((await call(g2, OTHER_TENANT_KEY, `/v1/jobs/${a}`)).status).to.equal(404);
    expect((await call(g2, TEST_KEY, `/v1/jobs/${b}`)).status).to.equal(404);
  });
});
