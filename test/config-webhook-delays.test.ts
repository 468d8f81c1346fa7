import { expect } from 'chai';
import { ConfigError, loadConfig } from '@infer/config';
import type { Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { mlpFeatures } from './helpers/batches.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * WEBHOOK_RETRY_DELAYS_MS as operators may write it (README: "comma-separated
 * delays in ms between webhook delivery attempts"): zeros (retry at once),
 * and very long delays. A list loadConfig accepts must be one the platform
 * can run, or be refused at start naming the variable.
 */
interface Delivery {
  state: string;
  attempt_count: number;
  next_attempt_at: string | null;
}

async function deliveriesOf(p: TestPlatform, jobId: string): Promise<Delivery[]> {
  const res = await p.api(`/v1/jobs/${jobId}/webhook_deliveries`);
  expect(res.status).to.equal(200);
  return ((await res.json()) as { data: Delivery[] }).data;
}

async function submitWithHook(p: TestPlatform, url: string): Promise<Job> {
  const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(2) }, webhook: url }), headers: { prefer: 'wait=20' } });
  const job = (await res.json()) as Job;
  expect(res.status, JSON.stringify(job)).to.equal(200);
  return job;
}

describe('config: WEBHOOK_RETRY_DELAYS_MS odd lists', function () {
  this.timeout(90_000);
  let hooks: WebhookReceiver;
  let p: TestPlatform | undefined;

  beforeEach(async () => {
    hooks = await startWebhookReceiver(() => 500);
  });
  afterEach(async () => {
    await p?.close();
    p = undefined;
    await hooks.close();
  });

  it('"0,0": three attempts, each retry at once, then failed', async () => {
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '0,0' } });
    const job = await submitWithHook(p, hooks.url);
    const [ended] = await waitUntil(
      async () => {
        const list = await deliveriesOf(p!, job.id);
        return list.length === 1 && list[0]!.state !== 'pending' ? list : null;
      },
      20_000,
      'the delivery to fail for good',
    );
    expect({ state: ended!.state, attempts: ended!.attempt_count, received: hooks.deliveries.length }).to.deep.equal({ state: 'failed', attempts: 3, received: 3 });
  });

  it('a delay loadConfig accepts (99999999999999999999 ms) is one the platform can run: the first attempt is made and the next is scheduled', async () => {
    const raw = '99999999999999999999';
    let accepted = true;
    try {
      loadConfig({ WEBHOOK_RETRY_DELAYS_MS: raw });
    } catch (err) {
      // Refused at start, naming the variable: fine.
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).problems.join('\n')).to.match(/^WEBHOOK_RETRY_DELAYS_MS: /);
      accepted = false;
    }
    if (!accepted) return;
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: raw } });
    const job = await submitWithHook(p, hooks.url);
    await waitUntil(() => hooks.deliveries.length >= 1, 15_000, 'the first attempt (WEBHOOK_RETRY_DELAYS_MS accepted, but no delivery came)').catch(async (err: Error) => {
      throw new Error(`${err.message}; deliveries listed: ${JSON.stringify(await deliveriesOf(p!, job.id))}`);
    });
    const list = await waitUntil(
      async () => {
        const l = await deliveriesOf(p!, job.id);
        return l.length === 1 && l[0]!.attempt_count === 1 ? l : null;
      },
      10_000,
      'the first attempt recorded',
    );
    expect(list[0]!.state).to.equal('pending');
  });
});
