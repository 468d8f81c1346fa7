import { expect } from 'chai';
import type { Job } from '@infer/contract';
import type { WebhookDelivery } from '@infer/webhooks';
import { OTHER_TENANT_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * docs/webhooks.md ("Delivery log and resend"): `GET /v1/jobs/{id}/webhook_deliveries`
 * "expire with the job or batch (RESULT_TTL_SECONDS, longer only while retries are
 * still scheduled)"; docs/api.md: "A delivery log lives as long as its job or batch
 * (RESULT_TTL_SECONDS from its last attempt), longer only while retries are still
 * scheduled". The log (and the job's list of event ids) is kept past the job's
 * record while a retry is scheduled, and the route lists it from there: the
 * deliveries still being retried can be listed after the job has expired.
 */
describe('webhooks: a job\'s delivery list while a retry is still scheduled past the job\'s RESULT_TTL', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver;

  before(async () => {
    // Results live 1 s; the receiver fails, and its retry is a minute away.
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '60000', RESULT_TTL_SECONDS: '1' } });
    hooks = await startWebhookReceiver(() => 500);
  });
  after(async () => {
    await hooks.close();
    await p.close();
  });

  it('GET /v1/jobs/{id}/webhook_deliveries still lists the pending delivery once the job record has expired', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook: hooks.url }) });
    expect(res.status).to.equal(202);
    const job = (await res.json()) as Job;
    // The first attempt meets the 500: the delivery stays pending, its next attempt a minute away.
    const pending = await waitUntil(async () => {
      const r = await p.api(`/v1/jobs/${job.id}/webhook_deliveries`);
      if (r.status !== 200) return undefined;
      const list = ((await r.json()) as { data: WebhookDelivery[] }).data;
      return list.find((d) => d.state === 'pending' && d.attempt_count === 1);
    }, 15_000, 'the first failed attempt, a retry scheduled');
    expect(pending.next_attempt_at).to.be.a('string');
    // The job's record expires (RESULT_TTL_SECONDS=1) while the retry is still scheduled.
    await waitUntil(async () => (await p.api(`/v1/jobs/${job.id}`)).status === 404, 10_000, 'the job record to expire');
    // The delivery itself is still there (and still pending)...
    const one = await p.api(`/v1/webhook_deliveries/${pending.id}`);
    expect(one.status).to.equal(200);
    expect(((await one.json()) as WebhookDelivery).state).to.equal('pending');
    // ...so the job's list, documented to live on while retries are scheduled, must still show it.
    const list = await p.api(`/v1/jobs/${job.id}/webhook_deliveries`);
    expect(list.status, await list.clone().text()).to.equal(200);
    const data = ((await list.json()) as { data: WebhookDelivery[] }).data;
    expect(data.map((d) => d.id)).to.include(pending.id);
    // Another tenant still learns nothing of it: the log lists only each tenant's own events.
    const other = await p.api(`/v1/jobs/${job.id}/webhook_deliveries`, { key: OTHER_TENANT_KEY });
    expect(other.status).to.equal(404);
    expect(((await other.json()) as { code: string }).code).to.equal('job_not_found');
  });
});
