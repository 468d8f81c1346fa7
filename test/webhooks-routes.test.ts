import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import type { WebhookDelivery } from '@infer/webhooks';
import { OTHER_TENANT_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';
import { startRawReceiver, type RawReceiver } from './helpers/webhook-receiver.js';

/**
 * The gateway's webhook routes (docs/api.md "Webhooks"): tenant isolation,
 * 404 vs 409, resends racing each other, what a delivery shows, no secret
 * anywhere but GET /v1/webhooks/secret.
 */

const INPUT = { features: new Array(64).fill(0.5) };

describe('webhooks: the webhook routes', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let gone: RawReceiver;

  before(async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50' } });
    // 410 on the first request (the delivery ends failed at once), 204 afterwards.
    gone = await startRawReceiver((n) => (n === 1 ? 410 : 204));
  });
  after(async () => {
    await gone?.close();
    await p?.close();
  });

  let jobId: string;
  let eventId: string;

  const delivery = async (id: string, key?: string) => p.api(`/v1/webhook_deliveries/${id}`, key ? { key } : {});

  it('a failed delivery: its log shows the 410, with duration and error', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: INPUT, webhook: gone.url }) });
    expect(res.status).to.equal(202);
    jobId = ((await res.json()) as { id: string }).id;
    const d = await waitUntil(
      async () => {
        const r = await p.api(`/v1/jobs/${jobId}/webhook_deliveries`);
        return ((await r.json()) as { data: WebhookDelivery[] }).data.find((x) => x.state === 'failed');
      },
      20_000,
      'the failed delivery',
    );
    eventId = d.id;
    expect(d.attempts).to.have.length(1);
    expect(d.attempts[0]).to.include({ attempt: 1, status_code: 410, state: 'failed', trigger: 'scheduled' });
    expect(d.attempts[0]!.duration_ms).to.be.a('number').and.at.least(0);
    expect(d.next_attempt_at).to.equal(null);
    expect(gone.got[0]!.headers['webhook-id']).to.equal(eventId);
  });

  it("another tenant's event and job answer exactly as unknown ones, and a resend by them changes nothing", async () => {
    const other = await delivery(eventId, OTHER_TENANT_KEY);
    const unknown = await delivery('msg_00000000000000000000000000000000', OTHER_TENANT_KEY);
    const strip = async (r: Response) => {
      const b = (await r.json()) as Record<string, unknown>;
      // The detail names the id asked for; everything else must match.
      return { status: r.status, type: r.headers.get('content-type'), code: b.code, title: b.title };
    };
    expect(await strip(other)).to.deep.equal(await strip(unknown));
    expect(other.status).to.equal(404);

    const resend = await p.api(`/v1/webhook_deliveries/${eventId}/resend`, { method: 'POST', key: OTHER_TENANT_KEY });
    expect(resend.status).to.equal(404);
    const list = await p.api(`/v1/jobs/${jobId}/webhook_deliveries`, { key: OTHER_TENANT_KEY });
    expect(list.status).to.equal(404);
    expect(((await list.json()) as { code: string }).code).to.equal('job_not_found');
    // Nothing moved for the owner.
    const mine = (await (await delivery(eventId)).json()) as WebhookDelivery;
    expect({ state: mine.state, attempts: mine.attempts.length }).to.deep.equal({ state: 'failed', attempts: 1 });
    expect(await webhookQueueIdle(p.prefix)).to.equal(true);
    expect(gone.got).to.have.length(1);
  });

  it('five resends at once: one 202, four 409, exactly one more request to the receiver', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => p.api(`/v1/webhook_deliveries/${eventId}/resend`, { method: 'POST' })));
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses).to.deep.equal([202, 409, 409, 409, 409]);
    const accepted = (await answers.find((r) => r.status === 202)!.json()) as WebhookDelivery;
    expect(accepted.id).to.equal(eventId);
    const conflict = (await answers.find((r) => r.status === 409)!.json()) as { code: string };
    expect(conflict.code).to.equal('conflict');
    const done = await waitUntil(
      async () => {
        const d = (await (await delivery(eventId)).json()) as WebhookDelivery;
        return d.state === 'pending' ? undefined : d;
      },
      20_000,
      'the resend to end',
    );
    await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'the webhook queue idle');
    expect(done.state).to.equal('succeeded');
    expect(done.attempts.map((a) => [a.attempt, a.trigger, a.status_code])).to.deep.equal([
      [1, 'scheduled', 410],
      [2, 'manual', 204],
    ]);
    expect(gone.got).to.have.length(2);
    // Same id and body, signed afresh: verifies with the tenant's secret.
    expect(gone.got[1]!.headers['webhook-id']).to.equal(eventId);
    expect(gone.got[1]!.body).to.equal(gone.got[0]!.body);
    const secret = ((await (await p.api('/v1/webhooks/secret')).json()) as { secret: string }).secret;
    new Webhook(secret).verify(gone.got[1]!.body, gone.got[1]!.headers);
  });

  it('no response but GET /v1/webhooks/secret carries the secret; that one is no-store and a whsec_ of 32 bytes', async () => {
    const res = await p.api('/v1/webhooks/secret');
    expect(res.headers.get('cache-control')).to.match(/no-store/);
    const { secret } = (await res.json()) as { secret: string };
    expect(secret).to.match(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(secret.slice('whsec_'.length), 'base64')).to.have.length(32);
    const raw = secret.slice('whsec_'.length);
    for (const path of [`/v1/webhook_deliveries/${eventId}`, `/v1/jobs/${jobId}/webhook_deliveries`, `/v1/jobs/${jobId}`]) {
      const text = await (await p.api(path)).text();
      expect(text.includes(raw), path).to.equal(false);
    }
    for (const g of gone.got) expect(JSON.stringify(g).includes(raw)).to.equal(false);
    // Another tenant's secret is another.
    const other = ((await (await p.api('/v1/webhooks/secret', { key: OTHER_TENANT_KEY })).json()) as { secret: string }).secret;
    expect(other).to.not.equal(secret);
    // No key: 401.
    expect((await p.api('/v1/webhooks/secret', { key: null })).status).to.equal(401);
  });

  it('a job with both events lists them oldest first (job.started, then job.completed), created_at rising, both delivered', async () => {
    const ok = await startRawReceiver(() => 204);
    try {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: INPUT, webhook: ok.url, webhook_events_filter: ['completed', 'start'] }) });
      expect(res.status).to.equal(202);
      const id = ((await res.json()) as { id: string }).id;
      const list = await waitUntil(
        async () => {
          const data = ((await (await p.api(`/v1/jobs/${id}/webhook_deliveries`)).json()) as { data: WebhookDelivery[] }).data;
          return data.length === 2 && data.every((d) => d.state === 'succeeded') ? data : undefined;
        },
        20_000,
        'both deliveries',
      );
      expect(list.map((d) => d.event_type)).to.deep.equal(['job.started', 'job.completed']);
      expect(Date.parse(list[0]!.created_at)).to.be.at.most(Date.parse(list[1]!.created_at));
      expect(new Set(ok.got.map((g) => g.headers['webhook-id'])).size).to.equal(2);
    } finally {
      await ok.close();
    }
  });

  it('an event id that is not one (braces, very long) is a 404, not a 500', async () => {
    for (const id of ['msg_x}', '{msg_x}', 'msg_' + 'a'.repeat(5000), '%7B%7D']) {
      const r = await delivery(id);
      expect(r.status, id.slice(0, 20)).to.equal(404);
      const s = await p.api(`/v1/webhook_deliveries/${id}/resend`, { method: 'POST' });
      expect(s.status, `resend ${id.slice(0, 20)}`).to.equal(404);
    }
  });
});
