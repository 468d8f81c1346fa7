import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Batch, BatchList, BatchResultLine, Job } from '@infer/contract';
import { BatchStore } from '@infer/batch-store';
import {
  b64Fp32,
  directOrt,
  getBatch,
  maxAbsDiff,
  mlpFeatures,
  readResults,
  submitBatch,
  toNdjson,
  uploadNdjson,
  waitForBatchEnd,
} from './helpers/batches.js';
import { waitUntil } from './helpers/wait.js';
import { FIXTURE_MODELS, OTHER_TENANT_KEY, TEST_REDIS_URL, startPlatform, type TestPlatform } from './helpers/platform.js';

const problemCode = async (res: Response): Promise<string> => ((await res.json()) as { code: string }).code;
const probabilities = (line: BatchResultLine): number[] => (line.output as { probabilities: number[] }).probabilities;

describe('batches: bulk offline scoring', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p.close();
  });

  it('JSON form: results equal the job API outputs, in order, with custom ids', async () => {
    const rows = [0, 1, 2, 3].map(mlpFeatures);
    const batch = await submitBatch(p, {
      json: {
        model: 'mlp',
        metadata: { run: 'nightly' },
        items: [
          { custom_id: 'a', input: { features: rows[0] } },
          { input: { features: { datatype: 'FP32', shape: [64], data: rows[1] } } },
          { custom_id: 'bad-shape', input: { features: rows[2]!.slice(0, 10) } },
          { custom_id: 'c', input: { features: b64Fp32(rows[3]!) } },
        ],
      },
    });
    expect(batch.object).to.equal('batch');
    expect(batch.model).to.equal('mlp');
    expect(batch.version).to.equal('2');
    expect(batch.metadata).to.deep.equal({ run: 'nightly' });
    expect(batch.request_counts.total).to.equal(4);
    expect(batch.urls).to.deep.equal({
      get: `/v1/batches/${batch.id}`,
      results: `/v1/batches/${batch.id}/results`,
      cancel: `/v1/batches/${batch.id}/cancel`,
    });

    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.status).to.equal('completed');
    expect(ended.request_counts).to.deep.equal({ total: 4, succeeded: 3, failed: 1, canceled: 0 });
    expect(ended.started_at).to.be.a('string');
    expect(ended.completed_at).to.be.a('string');

    const lines = await readResults(p, batch.id);
    expect(lines.map((l) => [l.index, l.custom_id, l.status])).to.deep.equal([
      [0, 'a', 'succeeded'],
      [1, null, 'succeeded'],
      [2, 'bad-shape', 'failed'],
      [3, 'c', 'succeeded'],
    ]);
    expect(lines[2]!.error!.code).to.equal('invalid_input');
    expect(lines[2]!.error!.message).to.match(/^items\[2\]: input "features": shape \[10\]/);
    expect(lines[2]!.output).to.equal(null);

    for (const i of [0, 1, 3]) {
      const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', input: { features: rows[i] } }) });
      const job = (await res.json()) as Job;
      expect(job.status).to.equal('succeeded');
      const jobOut = (job.output as { probabilities: number[] }).probabilities;
      expect(maxAbsDiff(probabilities(lines[i]!), jobOut)).to.be.at.most(1e-5);
      expect(lines[i]!.error).to.equal(null);
    }
  });

  it('NDJSON form: a streamed upload of several chunks; invalid lines fail with their line numbers, the rest equal direct ORT', async () => {
    const n = 4500; // three chunks of up to 2048 rows
    const items: unknown[] = [];
    for (let i = 0; i < n; i++) {
      const f = mlpFeatures(i);
      // All three tensor forms, mixed.
      const features = i % 3 === 0 ? f : i % 3 === 1 ? { datatype: 'FP32', shape: [64], data: f } : b64Fp32(f);
      items.push({ custom_id: `row-${i}`, input: { features } });
    }
    // Bad lines at known places (file lines are 1-based; the blank line is skipped but counted).
    items.splice(10, 0, '{"custom_id": "broken", "input": ');
    items.splice(20, 0, { custom_id: 'short', input: { features: [1, 2, 3] } });
    items.splice(30, 0, { custom_id: 'unknown', input: { features: mlpFeatures(0), extra: [1] } });
    items.splice(40, 0, '   ');
    items.splice(50, 0, { custom_id: 'nan', input: { features: { datatype: 'FP32', shape: [64], data: new Array(64).fill('x') } } });
    items.splice(3000, 0, { custom_id: 42, input: { features: mlpFeatures(1) } });
    const batch = await submitBatch(p, { ndjson: toNdjson(items), query: 'model=mlp&version=1' });
    expect(batch.version).to.equal('1');

    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.status).to.equal('completed');
    expect(ended.request_counts).to.deep.equal({ total: n + 5, succeeded: n, failed: 5, canceled: 0 });

    const lines = await readResults(p, batch.id);
    expect(lines).to.have.length(n + 5);
    lines.forEach((l, i) => expect(l.index).to.equal(i));
    const failed = lines.filter((l) => l.status === 'failed');
    expect(failed.map((l) => [l.custom_id, l.error!.code, l.error!.message.split(':')[0]])).to.deep.equal([
      [null, 'invalid_json', 'line 11'],
      ['short', 'invalid_input', 'line 21'],
      ['unknown', 'invalid_input', 'line 31'],
      ['nan', 'invalid_input', 'line 51'],
      [null, 'invalid_input', 'line 3001'],
    ]);
    expect(failed[2]!.error!.message).to.contain('unknown input "extra"');

    const ok = lines.filter((l) => l.status === 'succeeded');
    expect(ok.map((l) => l.custom_id)).to.deep.equal(Array.from({ length: n }, (_, i) => `row-${i}`));
    const direct = await directOrt(p.gateway.models.resolve('mlp', '1'), Array.from({ length: n }, (_, i) => mlpFeatures(i)));
    let worst = 0;
    ok.forEach((l, i) => (worst = Math.max(worst, maxAbsDiff(probabilities(l), direct[i]!))));
    expect(worst).to.be.at.most(1e-5);
  });

  it('a model with variable dimensions: rows of different shapes run and match the job API', async () => {
    const image = (w: number, seed: number) => [0, 1, 2].map((c) => Array.from({ length: 8 }, (_, y) => Array.from({ length: w }, (_, x) => ((c * 31 + y * 7 + x * 3 + seed) % 17) / 17)));
    const inputs = [image(16, 1), image(24, 2), image(16, 3), image(32, 4)];
    const batch = await submitBatch(p, { ndjson: toNdjson(inputs.map((x, i) => ({ custom_id: `img-${i}`, input: { x } }))), query: 'model=ocr-cls' });
    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.request_counts).to.deep.equal({ total: 4, succeeded: 4, failed: 0, canceled: 0 });
    const lines = await readResults(p, batch.id);
    for (const [i, x] of inputs.entries()) {
      const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'ocr-cls', input: { x } }) });
      const job = (await res.json()) as Job;
      expect(lines[i]!.custom_id).to.equal(`img-${i}`);
      expect(lines[i]!.output).to.deep.equal(job.output);
    }
  });

  it('answers the batch-level errors of docs/api.md', async () => {
    const body = toNdjson([{ input: { features: mlpFeatures(0) } }]);
    expect((await uploadNdjson(p, body, 'model=nope')).status).to.equal(404);
    expect((await uploadNdjson(p, body, 'model=mlp&version=9')).status).to.equal(404);
    const unknownParam = await uploadNdjson(p, body, 'model=mlp&modle=x');
    expect(unknownParam.status).to.equal(400);
    expect(await problemCode(unknownParam)).to.equal('invalid_input');
    const privateHook = await uploadNdjson(p, body, 'model=mlp&webhook=http://127.0.0.1/hook');
    expect(privateHook.status).to.equal(422);
    expect(await problemCode(privateHook)).to.equal('webhook_url_not_allowed');
    const empty = await uploadNdjson(p, '\n\n', 'model=mlp');
    expect(empty.status).to.equal(400);
    const noItems = await p.api('/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'mlp', items: [] }) });
    expect(noItems.status).to.equal(400);
    const notJson = await p.api('/v1/batches', { method: 'POST', body: '{"model":' });
    expect(await problemCode(notJson)).to.equal('invalid_json');
    const text = await p.api('/v1/batches', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expect(text.status).to.equal(415);
    expect(await problemCode(text)).to.equal('unsupported_media_type');
  });

  it('reads a gzip-encoded NDJSON upload', async () => {
    const { gzipSync } = await import('node:zlib');
    const body = gzipSync(toNdjson([0, 1, 2].map((i) => ({ custom_id: `z${i}`, input: { features: mlpFeatures(i) } }))));
    const res = await p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' }, body });
    expect(res.status).to.equal(202);
    const ended = await waitForBatchEnd(p, ((await res.json()) as Batch).id);
    expect(ended.request_counts.succeeded).to.equal(3);
  });

  it("another tenant's batch answers 404 batch_not_found, exactly like one that never existed", async () => {
    const batch = await submitBatch(p, { json: { model: 'mlp', items: [{ input: { features: mlpFeatures(0) } }] } });
    await waitForBatchEnd(p, batch.id);
    for (const id of [batch.id, '00000000-0000-4000-8000-000000000000', 'not-an-id']) {
      for (const [path, method] of [
        [`/v1/batches/${id}`, 'GET'],
        [`/v1/batches/${id}/results`, 'GET'],
        [`/v1/batches/${id}/cancel`, 'POST'],
      ] as const) {
        const res = await p.api(path, { method, key: id === batch.id ? OTHER_TENANT_KEY : undefined });
        expect(res.status, `${method} ${path}`).to.equal(404);
        expect(await problemCode(res)).to.equal('batch_not_found');
      }
    }
    const list = (await (await p.api('/v1/batches', { key: OTHER_TENANT_KEY })).json()) as BatchList;
    expect(list.data.map((b) => b.id)).to.not.include(batch.id);
  });

  it('lists the tenant’s batches newest first with cursor pagination', async () => {
    const other = await startPlatform({ worker: false });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await submitBatch(other, { json: { model: 'mlp', items: [{ input: { features: mlpFeatures(i) } }] } })).id);
      const pages: BatchList[] = [];
      let after: string | undefined;
      do {
        const res = await other.api(`/v1/batches?limit=2${after ? `&after=${after}` : ''}`);
        expect(res.status).to.equal(200);
        const page = (await res.json()) as BatchList;
        pages.push(page);
        after = page.has_more ? page.last_id : undefined;
      } while (after);
      expect(pages.map((pg) => pg.data.length)).to.deep.equal([2, 2, 1]);
      expect(pages.map((pg) => pg.has_more)).to.deep.equal([true, true, false]);
      expect(pages[0]!.object).to.equal('list');
      expect(pages[0]!.first_id).to.equal(pages[0]!.data[0]!.id);
      const listed = pages.flatMap((pg) => pg.data);
      expect(new Set(listed.map((b) => b.id))).to.deep.equal(new Set(ids));
      const created = listed.map((b) => Date.parse(b.created_at));
      expect(created).to.deep.equal([...created].sort((a, b) => b - a));

      expect((await other.api('/v1/batches?limit=0')).status).to.equal(400);
      expect((await other.api('/v1/batches?limit=101')).status).to.equal(400);
      // A limit in digits only: not hex, an exponent, spaces or a fraction (which a numeric coercion would take).
      for (const bad of ['0x10', '1e1', '%205', '2.0', '', 'two']) expect((await other.api(`/v1/batches?limit=${bad}`)).status, `limit=${bad}`).to.equal(400);
      expect((await other.api('/v1/batches?after=00000000-0000-4000-8000-000000000000')).status).to.equal(400);
      const empty = (await (await other.api('/v1/batches', { key: OTHER_TENANT_KEY })).json()) as BatchList;
      expect(empty).to.deep.equal({ object: 'list', data: [], has_more: false });
    } finally {
      await other.close();
    }
  });

  it('puts a TTL on every key a batch writes: long while it runs, RESULT_TTL once it ended', async () => {
    const batch = await submitBatch(p, {
      ndjson: toNdjson([...Array.from({ length: 10 }, (_, i) => ({ input: { features: mlpFeatures(i) } })), 'not json']),
    });
    await waitForBatchEnd(p, batch.id);
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
      const all = await scanKeys(redis, `${p.prefix}:*`);
      const mine = all.filter((k) => k.includes(batch.id));
      expect(mine.length).to.be.greaterThan(0);
      for (const key of new Set([...mine, ...store.keysOf(batch.id, 'tenant-a')])) {
        const ttl = await redis.pttl(key);
        if (ttl === -2) continue; // never written (the pending hash empties as chunks end)
        expect(ttl, key).to.be.greaterThan(0);
        if (key.includes(batch.id)) expect(ttl, key).to.be.at.most(p.config.resultTtlMs);
      }
      // Every batch key under the prefix (of this test's batches and the earlier ones) has a TTL.
      for (const key of all.filter((k) => /:batch(es)?:/.test(k))) {
        expect(await redis.pttl(key), key).to.be.greaterThan(0);
      }
    } finally {
      redis.disconnect();
    }
  });
});

describe('batches: before they end (no worker)', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  it('a queued batch: counts known at once, results 409 conflict until it ends', async () => {
    const batch = await submitBatch(p, { ndjson: toNdjson([{ input: { features: mlpFeatures(0) } }, '[1,2', { input: { features: mlpFeatures(1) } }]) });
    expect(batch.status).to.equal('queued');
    expect(batch.started_at).to.equal(null);
    expect(batch.request_counts).to.deep.equal({ total: 3, succeeded: 0, failed: 1, canceled: 0 });
    const res = await p.api(`/v1/batches/${batch.id}/results`);
    expect(res.status).to.equal(409);
    expect(await problemCode(res)).to.equal('conflict');
    expect((await getBatch(p, batch.id)).status).to.equal('queued');
    // While it has not ended, its keys live for UNENDED + RESULT_TTL.
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
      for (const key of store.keysOf(batch.id, 'tenant-a')) {
        const ttl = await redis.pttl(key);
        if (ttl === -2) continue; // the results hash: nothing written yet
        expect(ttl, key).to.be.greaterThan(p.config.resultTtlMs);
      }
    } finally {
      redis.disconnect();
    }
  });

  it('a batch of only invalid lines completes without a worker', async () => {
    const batch = await submitBatch(p, { ndjson: 'nope\n{"input": {}}\n' });
    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.status).to.equal('completed');
    expect(ended.request_counts).to.deep.equal({ total: 2, succeeded: 0, failed: 2, canceled: 0 });
    const lines = await readResults(p, batch.id);
    expect(lines.map((l) => l.error!.message)).to.deep.equal(['line 1: not valid JSON (' + jsonError('nope') + ')', 'line 2: missing input "features"']);
  });
});

describe('batches: the batch.completed webhook', () => {
  let p: TestPlatform;
  let server: http.Server;
  const received: { type: string; data: Batch }[] = [];
  let url = '';
  before(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push(JSON.parse(Buffer.concat(chunks).toString()) as { type: string; data: Batch });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    p = await startPlatform({ env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
  });
  after(async () => {
    await p.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is sent once when the batch completes, with the ended Batch', async () => {
    const batch = await submitBatch(p, {
      ndjson: toNdjson([{ input: { features: mlpFeatures(0) } }, 'oops']),
      query: `model=mlp&webhook=${encodeURIComponent(url)}`,
    });
    await waitForBatchEnd(p, batch.id);
    const event = await waitUntil(() => received.find((e) => e.data.id === batch.id), 10_000, 'the batch.completed webhook');
    expect(event.type).to.equal('batch.completed');
    expect(event.data.status).to.equal('completed');
    expect(event.data.request_counts).to.deep.equal({ total: 2, succeeded: 1, failed: 1, canceled: 0 });
    expect(received.filter((e) => e.data.id === batch.id)).to.have.length(1);
  });
});

describe('batches: every kind of model', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ models: FIXTURE_MODELS });
  });
  after(async () => {
    await p.close();
  });

  const cases: Array<[string, unknown[]]> = [
    // Not batched: two inputs, full tensors, one run per item. The third item's second input is bad.
    [
      'add-fixed',
      [
        { a: [[1, 2, 3], [4, 5, 6]], b: [[0.5, 0.5, 0.5], [1, 1, 1]] },
        { a: { datatype: 'FP32', shape: [2, 3], data: [1, 1, 1, 1, 1, 1] }, b: [[2, 2, 2], [3, 3, 3]] },
        { a: [[1, 2, 3], [4, 5, 6]], b: [[1, 2], [3, 4]] },
        { a: [[9, 9, 9], [9, 9, 9]], b: [[-9, -9, -9], [0, 0, 0]] },
      ],
    ],
    ['scalar-double', [{ v: 1.5 }, { v: -2 }, { v: [1] }, { v: 1e300 }]],
    // Batched INT64 in, INT64 and BOOL out.
    ['scale-int', [{ x: [1, 2, 3] }, { x: [-4, 0, 7] }, { x: [1.5, 2, 3] }, { x: { datatype: 'INT64', shape: [3], data: [5, 6, 7] } }]],
    // Variable length: rows of three lengths, grouped by shape.
    ['seq-sum', [{ seq: [1, 2, 3] }, { seq: [1] }, { seq: [4, 5, 6] }, { seq: [] }, { seq: [0.5, 0.25] }, { seq: [7, 8, 9] }]],
  ];
  for (const [model, inputs] of cases) {
    it(`${model}: each item's result is the job API's for the same input`, async () => {
      const batch = await submitBatch(p, { ndjson: toNdjson(inputs.map((input, i) => ({ custom_id: `${model}-${i}`, input }))), query: `model=${model}` });
      const ended = await waitForBatchEnd(p, batch.id);
      expect(ended.request_counts.total).to.equal(inputs.length);
      const lines = await readResults(p, batch.id);
      for (const [i, input] of inputs.entries()) {
        const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model, input }) });
        const line = lines[i]!;
        expect(line.custom_id).to.equal(`${model}-${i}`);
        if (res.status === 422) {
          const problem = (await res.json()) as { detail: string };
          expect(line.status, `item ${i}`).to.equal('failed');
          expect(line.error!.message).to.equal(`line ${i + 1}: ${problem.detail}`);
        } else {
          const job = (await res.json()) as Job;
          expect(line.status, `item ${i}`).to.equal('succeeded');
          expect(line.output).to.deep.equal(job.output);
        }
      }
    });
  }
});

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (err) {
    return (err as Error).message;
  }
  return '';
}

async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}
