import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import type { WebhookDelivery } from '@infer/webhooks';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';
import { startRawReceiver, type RawReceiver } from './helpers/webhook-receiver.js';

/**
 * docs/webhooks.md: the delivery lists "expire with the job or batch
 * (RESULT_TTL_SECONDS, longer only while retries are still scheduled: then
 * they are listed after the job or batch itself has expired)"; docs/api.md:
 * "A delivery log lives as long as its job or batch (RESULT_TTL_SECONDS from
 * its last attempt)"; a resend is for a delivery that has ended.
 *
 * A job whose receiver kept failing past RESULT_TTL: the job is gone, its
 * delivery ended failed and is still in the log; a resend of it is accepted
 * and delivered, and the log (by event id and by job id) shows it.
 */
describe('webhooks: resending a delivery whose job has expired', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let r: RawReceiver;

  before(async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '5000', RESULT_TTL_SECONDS: '4' } });
    r = await startRawReceiver((n) => (n <= 2 ? 503 : 204));
  });
  after(async () => {
    await r?.close();
    await p?.close();
  });

  it('is accepted (202) and delivered, and the log still lists it under the job', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook: r.url }) });
    expect(res.status).to.equal(202);
    const jobId = ((await res.json()) as { id: string }).id;
    const eventId = await waitUntil(() => r.got[0]?.headers['webhook-id'], 20_000, 'the first attempt');
    const read = async () => {
      const x = await p.api(`/v1/webhook_deliveries/${eventId}`);
      return x.status === 200 ? ((await x.json()) as WebhookDelivery) : null;
    };
    // The retries end (the last attempt ~5 s after the first), after the job itself has expired (4 s).
    const failed = await waitUntil(async () => {
      const d = await read();
      return d?.state === 'failed' ? d : undefined;
    }, 20_000, 'the delivery to end failed');
    expect(failed.attempts.map((a) => a.status_code)).to.deep.equal([503, 503]);
    expect((await p.api(`/v1/jobs/${jobId}`)).status, 'the job has expired').to.equal(404);
    // Still listed by job id (the log outlives its job while it is there at all).
    const listed = await p.api(`/v1/jobs/${jobId}/webhook_deliveries`);
    expect(listed.status).to.equal(200);

    const resend = await p.api(`/v1/webhook_deliveries/${eventId}/resend`, { method: 'POST' });
    expect(resend.status, await resend.clone().text()).to.equal(202);
    const done = await waitUntil(async () => {
      const d = await read();
      return d && d.state !== 'pending' ? d : undefined;
    }, 20_000, 'the resend to end');
    await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'the webhook queue idle');
    expect(done.state).to.equal('succeeded');
    expect(done.attempts.map((a) => [a.status_code, a.trigger])).to.deep.equal([
      [503, 'scheduled'],
      [503, 'scheduled'],
      [204, 'manual'],
    ]);
    expect(r.got).to.have.length(3);
    const secret = ((await (await p.api('/v1/webhooks/secret')).json()) as { secret: string }).secret;
    new Webhook(secret).verify(r.got[2]!.body, r.got[2]!.headers);
    const after = await p.api(`/v1/jobs/${jobId}/webhook_deliveries`);
    expect(after.status).to.equal(200);
    expect(((await after.json()) as { data: WebhookDelivery[] }).data.map((d) => d.state)).to.deep.equal(['succeeded']);
  });
});
