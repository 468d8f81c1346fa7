import { expect } from 'chai';
import type { Batch, BatchList } from '@infer/contract';
import { b64Fp32, mlpFeatures, streamedUpload } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A batch canceled while its upload is still streaming. The cancel answers
 * 200 with the batch `canceled` (committed: counts final, a batch.completed
 * event queued). If the upload then fails (here: its time limit runs out,
 * 408; a client that disconnects takes the same path), the gateway forgets
 * the upload, but not the batch: one a client was told is canceled, and
 * whose batch.completed was delivered, stays readable as canceled.
 */
describe('a batch canceled while uploading, whose upload then fails', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let hooks: WebhookReceiver<{ type: string; data: Batch }>;
  before(async () => {
    hooks = await startWebhookReceiver();
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true' }, uploadTimeLimitMs: 4000 });
  });
  after(async () => {
    await p?.close();
    await hooks?.close();
  });

  it('stays readable as canceled (it was canceled and told so), not 404 once the upload times out', async () => {
    const line = (i: number) => JSON.stringify({ custom_id: `u${i}`, input: { features: b64Fp32(mlpFeatures(i)) } }) + '\n';
    const { req, answer } = streamedUpload(p, `model=mlp&webhook=${encodeURIComponent(hooks.url)}`);
    let body = '';
    for (let i = 0; i < 2048 * 2 + 3; i++) body += line(i);
    req.write(body);
    const seen = await waitUntil(async () => {
      const list = (await (await p.api('/v1/batches')).json()) as BatchList;
      const b = list.data[0];
      return b && b.request_counts.total >= 2048 ? b : null;
    }, 20_000, 'the upload to register its first chunks');
    const c = await p.api(`/v1/batches/${seen.id}/cancel`, { method: 'POST' });
    expect(c.status).to.equal(200);
    const canceled = (await c.json()) as Batch;
    expect(canceled.status).to.equal('canceled');
    // The client sends nothing more: the upload's time limit cuts it (408).
    const res = await answer;
    expect(res.status, res.body).to.equal(408);
    const event = await waitUntil(() => hooks.deliveries.find((d) => d.event.type === 'batch.completed' && d.event.data.id === seen.id), 20_000, 'batch.completed');
    expect(event.event.data.status).to.equal('canceled');
    // The batch that was canceled, and told of, is still there.
    const after = await p.api(`/v1/batches/${seen.id}`);
    expect(after.status, 'GET of a batch whose cancel answered 200 and whose batch.completed was delivered').to.equal(200);
    const got = (await after.json()) as Batch;
    expect(got.status).to.equal('canceled');
    expect(got.request_counts).to.deep.equal(canceled.request_counts);
    const results = await p.api(`/v1/batches/${seen.id}/results`);
    expect(results.status).to.equal(200);
    const lines = (await results.text()).split('\n').filter(Boolean);
    expect(lines.length).to.equal(canceled.request_counts.total);
    req.destroy();
  });

  it('stays canceled when its client disconnects after the cancel (the same path as a failed upload)', async () => {
    const line = (i: number) => JSON.stringify({ custom_id: `v${i}`, input: { features: b64Fp32(mlpFeatures(i)) } }) + '\n';
    const { req, answer } = streamedUpload(p);
    let body = '';
    for (let i = 0; i < 2048 * 2 + 3; i++) body += line(i);
    req.write(body);
    const seen = await waitUntil(async () => {
      const list = (await (await p.api('/v1/batches')).json()) as BatchList;
      const b = list.data[0];
      return b && (b.status === 'queued' || b.status === 'running') && b.request_counts.total >= 2048 ? b : null;
    }, 20_000, 'the upload to register its first chunks');
    const c = await p.api(`/v1/batches/${seen.id}/cancel`, { method: 'POST' });
    expect(c.status).to.equal(200);
    req.destroy();
    await answer;
    // Nothing happens to an ended batch: a bounded look (3 s) that it does not turn into a 404.
    const vanished = await waitUntil(async () => (await p.api(`/v1/batches/${seen.id}`)).status === 404, 3000, 'the canceled batch to vanish').catch(() => false);
    expect(vanished, 'a batch canceled with 200 became 404 batch_not_found').to.equal(false);
  });
});
