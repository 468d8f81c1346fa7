import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Batch, BatchResultLine } from '@infer/contract';
import { b64Fp32, expectResultsWhole, getBatch, mlpFeatures, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { deepMlpModel } from './helpers/slow-models.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/** Results as text, through a live gateway once Redis answers again. */
async function resultsWhenBack(p: TestPlatform, id: string): Promise<BatchResultLine[]> {
  const text = await waitUntil(async () => {
    const res = await p.api(`/v1/batches/${id}/results`).catch(() => null);
    if (!res || res.status !== 200) return null;
    return res.text().catch(() => null);
  }, 30_000, 'the results to download');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as BatchResultLine);
}

/**
 * Redis (appendonly, fsync always: nothing acknowledged is lost)
 * killed and started again while a batch runs, and while its results file
 * streams to a client.
 */
describe('Redis killed and restarted mid-run and mid-download', function () {
  this.timeout(90_000);
  let dir: string;
  let redis: OwnRedis;
  let repo: TempModelRepo;
  let hooks: WebhookReceiver<{ type: string; data: Batch }>;
  let p: TestPlatform | undefined;

  before(async () => {
    repo = tempModelRepo({ slow: { onnx: deepMlpModel(), config: { max_batch_size: 256, max_delay_ms: 2 } }, mlp: { from: path.join(import.meta.dirname, 'fixtures', 'served', 'mlp') } });
    hooks = await startWebhookReceiver();
  });
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'batches-redis-restart-'));
    redis = await OwnRedis.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
    p = await startPlatform({ redisUrl: redis.url, models: repo.root, env: { WORKER_LOCK_MS: '2000', WEBHOOK_ALLOW_PRIVATE: 'true' } });
  });
  afterEach(async () => {
    await redis.start().catch(() => undefined);
    await p?.close().catch(() => undefined);
    p = undefined;
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  after(async () => {
    await hooks?.close();
    repo?.remove();
  });

  it('mid-run: the batch completes with every row once, counts that match the file, and one batch.completed', async () => {
    const q = p!;
    const rows = 3 * 2048;
    const ndjson = toNdjson(Array.from({ length: rows }, (_, i) => ({ custom_id: `r${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })));
    const batch = await submitBatch(q, { ndjson, query: `model=slow&webhook=${encodeURIComponent(hooks.url)}` });
    await waitUntil(async () => {
      const b = await getBatch(q, batch.id);
      return b.request_counts.succeeded > 0 && b.request_counts.succeeded < rows;
    }, 60_000, 'a chunk done, the batch not');
    await redis.stop();
    await redis.start();
    const ended = await waitUntil(async () => {
      const res = await q.api(`/v1/batches/${batch.id}`).catch(() => null);
      if (!res || res.status !== 200) return null;
      const b = (await res.json()) as Batch;
      return b.status === 'completed' || b.status === 'canceled' ? b : null;
    }, 60_000, 'the batch to end after the restart');
    expect(ended.status).to.equal('completed');
    expect(ended.request_counts).to.deep.equal({ total: rows, succeeded: rows, failed: 0, canceled: 0 });
    const lines = await resultsWhenBack(q, batch.id);
    expectResultsWhole(lines, ended);
    lines.forEach((l, i) => {
      if (l.custom_id !== `r${i}`) expect.fail(`line ${i}: custom_id ${l.custom_id}`);
    });
    const events = await waitUntil(() => {
      const mine = hooks.deliveries.filter((d) => d.event.type === 'batch.completed' && d.event.data.id === batch.id);
      return mine.length > 0 ? mine : null;
    }, 30_000, 'batch.completed');
    expect(new Set(events.map((e) => e.headers['webhook-id'])).size, 'one event id').to.equal(1);
    expect(events[0]!.event.data.request_counts).to.deep.equal(ended.request_counts);
  });

  it('mid-download: the transfer fails rather than ending cleanly short, and a download after the restart is whole', async () => {
    const q = p!;
    const rows = 10 * 2048;
    const ndjson = toNdjson(Array.from({ length: rows }, (_, i) => ({ custom_id: `d${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })));
    const batch = await submitBatch(q, { ndjson, query: 'model=mlp' });
    const ended = await waitForBatchEnd(q, batch.id, 60_000);
    // A client that reads the first piece, then stops reading (TCP pushes back on the gateway) while Redis dies.
    const url = new URL(q.baseUrl);
    const outcome = await new Promise<{ ended: boolean; error: string | null; bytes: number }>((resolve) => {
      const req = http.get({ host: url.hostname, port: url.port, path: `/v1/batches/${batch.id}/results`, headers: { authorization: `Bearer ${TEST_KEY}` } }, (res) => {
        let bytes = 0;
        let killed = false;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (!killed) {
            killed = true;
            res.pause();
            void redis.stop().then(() => res.resume());
          }
        });
        res.on('end', () => resolve({ ended: true, error: null, bytes }));
        res.on('error', (err) => resolve({ ended: false, error: err.message, bytes }));
        res.on('close', () => resolve({ ended: res.complete, error: res.complete ? null : 'closed early', bytes }));
      });
      req.on('error', (err) => resolve({ ended: false, error: err.message, bytes: 0 }));
    });
    await redis.start();
    const whole = await resultsWhenBack(q, batch.id);
    expectResultsWhole(whole, ended);
    const wholeBytes = whole.reduce((n, l) => n + Buffer.byteLength(JSON.stringify(l)) + 1, 0);
    if (outcome.ended) expect(outcome.bytes, 'a download that ended cleanly is whole').to.be.at.least(wholeBytes - 1000);
  });
});
