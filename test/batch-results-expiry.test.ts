import http from 'node:http';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { ElemType, encodeModel, initializer, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/** Batched: y[N,256] = x[N,1] · w[1,256]. A tiny input line, a 2.5 KB result line: a results file of tens of MB from a small upload. */
function wideModel(): Uint8Array {
  const width = 256;
  return encodeModel({
    name: 'wide',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', 1])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', width])],
    nodes: [node('MatMul', ['x', 'w'], ['y'])],
    initializers: [initializer('w', ElemType.FLOAT, [1, width], Float32Array.from({ length: width }, (_, i) => 1 + i / 7))],
  });
}

/**
 * Results file integrity: "One line per item, in submission order". A batch
 * is deleted RESULT_TTL_SECONDS after it ends; a download that began before
 * that (200, streamed a chunk at a time) and is still being read when the
 * keys expire must not end as if it were whole. It may fail (the connection
 * cut, so the client knows), or carry every line; a clean end with lines
 * missing is a truncated file nobody can tell from a complete one.
 */
describe('batches: a results download still streaming when the batch expires', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    repo = tempModelRepo({ wide: { onnx: wideModel(), config: { max_batch_size: 256, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root, env: { RESULT_TTL_SECONDS: '6' } });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('does not end cleanly with lines missing: every line, or a failed transfer', async () => {
    const n = 8 * 2048; // 8 chunks, ~40 MB of result lines
    const batch = await submitBatch(p, { ndjson: toNdjson(Array.from({ length: n }, (_, i) => ({ custom_id: `w${i}`, input: { x: [i / 1000] } }))), query: 'model=wide' });
    const ended = await waitForBatchEnd(p, batch.id, 60_000);
    expect(ended.status).to.equal('completed');

    // The download starts while the batch is there (200, its first bytes come), then the client reads slowly:
    // it takes nothing more until the batch's keys have expired.
    const url = new URL(p.baseUrl);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.get({ host: url.hostname, port: url.port, path: `/v1/batches/${batch.id}/results`, headers: { authorization: `Bearer ${TEST_KEY}` }, agent: false }, resolve);
      req.on('error', reject);
    });
    expect(res.statusCode).to.equal(200);
    res.pause();
    await waitUntil(async () => (await redis.exists(keys(p.prefix).batch(batch.id))) === 0, 30_000, 'the ended batch to expire (RESULT_TTL_SECONDS)');

    let text = '';
    const outcome = await new Promise<'end' | 'cut'>((resolve) => {
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.once('end', () => resolve('end'));
      res.once('error', () => resolve('cut'));
      res.once('aborted', () => resolve('cut'));
      res.once('close', () => resolve(res.complete ? 'end' : 'cut'));
      res.resume();
    });
    if (outcome === 'cut') return; // the client is told the file is not whole
    const lines = text.split('\n').filter((l) => l.length > 0);
    expect(lines.length, 'result lines of a download that ended cleanly').to.equal(n);
    lines.forEach((l, i) => {
      const line = JSON.parse(l) as { index: number; custom_id: string };
      if (line.index !== i || line.custom_id !== `w${i}`) expect.fail(`line ${i}: ${l.slice(0, 80)}`);
    });
  });
});
