import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { deliver, type WebhookDelivery } from '@infer/webhooks';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { startRawReceiver, type RawReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Webhook URLs that WHATWG's URL parser accepts but that cannot be delivered
 * to: user-info with a malformed percent-escape (`http://u:%zz@host/`: `new
 * URL` keeps `%zz` as it is; http.request runs decodeURIComponent on the
 * user-info and throws URIError synchronously, which made deliver() reject
 * and the delivery retry for hours with no attempt logged), and port 0.
 * They are refused at submit; one stored before that fails its attempt for
 * good, with the reason logged.
 */

const signed = { 'webhook-id': 'msg_x', 'webhook-timestamp': '1', 'webhook-signature': 'v1,x' };

describe('webhooks: deliver() on a URL whose user-info is a malformed percent-escape', function () {
  this.timeout(15_000);

  for (const url of ['http://u:%zz@example.com/hook', 'http://%E0%A4%A@example.com/hook']) {
    it(`resolves as a failed attempt, never rejects (${url})`, async () => {
      let outcome: Awaited<ReturnType<typeof deliver>> | undefined;
      let thrown: unknown;
      try {
        outcome = await deliver({ url, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 2000, resolve: async () => [{ address: '127.0.0.1', family: 4 }] });
      } catch (err) {
        thrown = err;
      }
      expect(thrown, `deliver() rejected: ${String(thrown)}`).to.equal(undefined);
      expect(outcome!.ok).to.equal(false);
      expect(outcome!.final, 'no retry can help').to.equal(true);
      expect(outcome!.error).to.match(/^the webhook URL cannot be used: /);
    });
  }
});

describe('webhooks: deliver() on a URL with well-formed user-info', function () {
  it('sends it as Basic credentials, percent-escapes decoded', async () => {
    const r = await startRawReceiver();
    try {
      const outcome = await deliver({ url: r.url.replace('http://', 'http://u%3Ax:p%40ss@'), headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 5000 });
      expect(outcome.ok).to.equal(true);
      expect(r.got[0]!.headers.authorization).to.equal(`Basic ${Buffer.from('u:x:p@ss').toString('base64')}`);
    } finally {
      await r.close();
    }
  });
});

describe('webhooks: URLs refused at submit that the URL parser accepts', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let r: RawReceiver;

  before(async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    r = await startRawReceiver();
  });
  after(async () => {
    await r.close();
    await p.close();
  });

  const cases: Array<[string, (url: string) => string, RegExp]> = [
    ['a malformed %-escape in the password', (u) => u.replace('http://', 'http://user:%zz@'), /malformed %-escape/],
    ['a malformed %-escape in the user name', (u) => u.replace('http://', 'http://%E0%A4%A@'), /malformed %-escape/],
    ['port 0', (u) => u.replace(/:\d+\//, ':0/'), /port 0/],
  ];
  for (const [what, webhook, why] of cases) {
    it(`${what}: 422 webhook_url_not_allowed, saying why, on a job and on a batch`, async () => {
      const url = webhook(r.url);
      const job = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) }, webhook: url }) });
      const batch = await p.api(`/v1/batches?model=mlp&webhook=${encodeURIComponent(url)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body: `${JSON.stringify({ input: { features: new Array(64).fill(0.5) } })}\n`,
      });
      for (const res of [job, batch]) {
        const body = (await res.json()) as { code: string; detail: string };
        expect(res.status, JSON.stringify(body)).to.equal(422);
        expect(body.code).to.equal('webhook_url_not_allowed');
        expect(body.detail).to.match(why);
      }
    });
  }
});
