import http from 'node:http';
import zlib from 'node:zlib';
import { expect } from 'chai';
import type { Batch, BatchList, BatchResultLine } from '@infer/contract';
import { b64Fp32, directOrt, getBatch, maxAbsDiff, mlpFeatures, readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

function consistent(batch: Batch, lines: BatchResultLine[]): void {
  const c = batch.request_counts;
  expect(c.total, 'total = succeeded + failed + canceled').to.equal(c.succeeded + c.failed + c.canceled);
  expect(lines.length, 'one line per item').to.equal(c.total);
  lines.forEach((l, i) => expect(l.index).to.equal(i));
  const by = (s: string) => lines.filter((l) => l.status === s).length;
  expect({ succeeded: by('succeeded'), failed: by('failed'), canceled: by('canceled') }).to.deep.equal({ succeeded: c.succeeded, failed: c.failed, canceled: c.canceled });
}

async function post(p: TestPlatform, path: string, body: Buffer | string, headers: Record<string, string>): Promise<Response> {
  return p.api(path, { method: 'POST', headers, body });
}

/**
 * Bulk batches at their edges: awkward NDJSON (BOM, CRLF, blank lines,
 * non-object lines, no final newline), limits, compressed and cut-off
 * uploads, a client gone mid-upload, cancel racing completion; and a batch
 * that no worker has started on yet.
 */
describe('batches at their edges', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ env: { MAX_BODY_BYTES: String(64 * 1024) } });
  });
  after(async () => {
    await p.close();
  });

  it('BOM, CRLF, blank and whitespace lines, non-object JSON, last line without newline', async () => {
    const item = (i: number) => JSON.stringify({ custom_id: `c${i}`, input: { features: mlpFeatures(i) } });
    const body =
      '\uFEFF' + item(0) + '\r\n' + // line 1
      '\r\n' + // line 2 blank
      '[1,2]\r\n' + // line 3
      ' \t \r\n' + // line 4 blank
      '"str"\r\n' + // line 5
      'null\r\n' + // line 6
      '42\r\n' + // line 7
      '{"custom_id":"dup","input":{"features":' + JSON.stringify(mlpFeatures(8)) + '}}\r\n' + // line 8
      '{"custom_id":"dup","input":{"features":' + JSON.stringify(mlpFeatures(9)) + '}}\r\n' + // line 9
      '{"custom_id":"\\u00e9\\"q","input":{"features":' + JSON.stringify(mlpFeatures(10)) + '}}\r\n' + // line 10
      item(11); // line 11, no newline
    const batch = await submitBatch(p, { ndjson: body });
    expect(batch.request_counts.total).to.equal(9);
    const ended = await waitForBatchEnd(p, batch.id);
    const lines = await readResults(p, batch.id);
    consistent(ended, lines);
    expect(lines.map((l) => [l.custom_id, l.status, l.error ? l.error.message.split(':')[0] : null])).to.deep.equal([
      ['c0', 'succeeded', null],
      [null, 'failed', 'line 3'],
      [null, 'failed', 'line 5'],
      [null, 'failed', 'line 6'],
      [null, 'failed', 'line 7'],
      ['dup', 'succeeded', null],
      ['dup', 'succeeded', null],
      ['é"q', 'succeeded', null],
      ['c11', 'succeeded', null],
    ]);
    const model = p.gateway.models.resolve('mlp');
    const direct = await directOrt(model, [0, 8, 9, 10, 11].map(mlpFeatures));
    const got = [0, 5, 6, 7, 8].map((i) => (lines[i]!.output as { probabilities: number[] }).probabilities);
    got.forEach((g, k) => expect(maxAbsDiff(g, direct[k]!)).to.be.at.most(1e-5));
  });

  it('the same via the JSON form: non-object items fail by their index', async () => {
    const batch = await submitBatch(p, {
      json: { model: 'mlp', items: [null, 5, 'x', [], { custom_id: 'ok', input: { features: mlpFeatures(1) } }, { custom_id: 'bad', input: { features: [1] } }] },
    });
    const ended = await waitForBatchEnd(p, batch.id);
    const lines = await readResults(p, batch.id);
    consistent(ended, lines);
    expect(lines.map((l) => [l.custom_id, l.status, l.error ? l.error.message.split(':')[0] : null])).to.deep.equal([
      [null, 'failed', 'items[0]'],
      [null, 'failed', 'items[1]'],
      [null, 'failed', 'items[2]'],
      [null, 'failed', 'items[3]'],
      ['ok', 'succeeded', null],
      ['bad', 'failed', 'items[5]'],
    ]);
  });

  it('a line over the per-line limit fails alone; NDJSON bodies over MAX_BODY_BYTES in total are fine', async () => {
    const items: string[] = [];
    for (let i = 0; i < 400; i++) items.push(JSON.stringify({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }));
    items.splice(200, 0, JSON.stringify({ custom_id: 'huge', input: { features: mlpFeatures(0), pad: 'x'.repeat(70_000) } }));
    const body = items.join('\n') + '\n';
    expect(body.length).to.be.greaterThan(4 * 64 * 1024);
    const res = await post(p, '/v1/batches?model=mlp', body, { 'content-type': 'application/x-ndjson' });
    expect(res.status, await res.clone().text()).to.equal(202);
    const ended = await waitForBatchEnd(p, ((await res.json()) as Batch).id);
    const lines = await readResults(p, ended.id);
    consistent(ended, lines);
    expect(ended.request_counts).to.deep.equal({ total: 401, succeeded: 400, failed: 1, canceled: 0 });
    expect(lines[200]!.error!.message).to.match(/^line 201: longer than the limit of 65536 bytes/);
    expect(lines[201]!.custom_id).to.equal('r200');
  });

  it('a JSON batch over MAX_BODY_BYTES is 413 problem+json', async () => {
    const items = Array.from({ length: 200 }, (_, i) => ({ input: { features: mlpFeatures(i) } }));
    const res = await post(p, '/v1/batches', JSON.stringify({ model: 'mlp', items }), { 'content-type': 'application/json' });
    expect(res.status).to.equal(413);
    expect(res.headers.get('content-type')).to.match(/application\/problem\+json/);
    expect(((await res.json()) as { code: string }).code).to.equal('payload_too_large');
    const gz = await post(p, '/v1/batches', zlib.gzipSync(JSON.stringify({ model: 'mlp', items })), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect(gz.status).to.equal(413);
  });

  it('deflate and br NDJSON uploads', async () => {
    const body = toNdjson([0, 1, 2].map((i) => ({ custom_id: `z${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })));
    for (const [coding, bytes] of [['deflate', zlib.deflateSync(body)], ['br', zlib.brotliCompressSync(body)], ['x-gzip', zlib.gzipSync(body)]] as const) {
      const res = await post(p, '/v1/batches?model=mlp', bytes, { 'content-type': 'application/x-ndjson; charset=utf-8', 'content-encoding': coding });
      expect(res.status, coding).to.equal(202);
      const ended = await waitForBatchEnd(p, ((await res.json()) as Batch).id);
      expect(ended.request_counts, coding).to.deep.equal({ total: 3, succeeded: 3, failed: 0, canceled: 0 });
    }
  });

  it('a gzip NDJSON upload cut off mid-way (several chunks in) is 400 invalid_json and leaves no batch', async () => {
    const other = await startPlatform({ worker: false, env: { TENANT_MAX_OPEN_BATCHES: '1', BATCH_PARSE_THREAD: process.env.RV_THREAD ?? 'true' } });
    try {
      const items = Array.from({ length: 5000 }, (_, i) => ({ custom_id: `t${i}`, input: { features: b64Fp32(mlpFeatures(i)) } }));
      const full = zlib.gzipSync(toNdjson(items));
      const cut = full.subarray(0, Math.floor(full.length * 0.9));
      const res = await post(other, '/v1/batches?model=mlp', cut, { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' });
      expect(res.status, await res.clone().text()).to.equal(400);
      expect(res.headers.get('content-type')).to.match(/application\/problem\+json/);
      expect(((await res.json()) as { code: string }).code).to.equal('invalid_json');
      const list = (await (await other.api('/v1/batches')).json()) as BatchList;
      expect(list.data).to.deep.equal([]);
      // Its open-batch slot was given back.
      const again = await post(other, '/v1/batches?model=mlp', toNdjson(items.slice(0, 2)), { 'content-type': 'application/x-ndjson' });
      expect(again.status).to.equal(202);
    } finally {
      await other.close();
    }
  });

  it('a client gone mid-upload leaves no batch behind, and its slot is free again', async () => {
    const other = await startPlatform({ worker: false, env: { TENANT_MAX_OPEN_BATCHES: '1', BATCH_PARSE_THREAD: process.env.RV_THREAD ?? 'true' } });
    try {
      const url = new URL(other.baseUrl);
      const req = http.request({ host: url.hostname, port: url.port, path: '/v1/batches?model=mlp', method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' } });
      req.on('error', () => undefined);
      const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ custom_id: `t${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })).join('\n') + '\n';
      req.write(lines);
      // Wait until its first chunks are registered (the batch shows in the list), then drop the connection.
      const seen = await waitUntil(async () => {
        const list = (await (await other.api('/v1/batches')).json()) as BatchList;
        return list.data[0];
      }, 10_000, 'the upload to register a chunk');
      req.destroy();
      await waitUntil(async () => {
        const res = await other.api(`/v1/batches/${seen.id}`);
        return res.status === 404;
      }, 10_000, 'the abandoned upload to be discarded');
      const list = (await (await other.api('/v1/batches')).json()) as BatchList;
      expect(list.data).to.deep.equal([]);
      const again = await waitUntil(async () => {
        const r = await post(other, '/v1/batches?model=mlp', toNdjson([{ input: { features: mlpFeatures(0) } }]), { 'content-type': 'application/x-ndjson' });
        return r.status === 202 ? r : null;
      }, 5000, 'the slot to come free');
      expect(again.status).to.equal(202);
    } finally {
      await other.close();
    }
  });

  it('cancel racing completion: one outcome, counts and results agree', async () => {
    for (let round = 0; round < 6; round++) {
      const n = 50 + round * 400;
      const batch = await submitBatch(p, { ndjson: toNdjson(Array.from({ length: n }, (_, i) => (i % 97 === 5 ? 'oops' : { custom_id: `k${i}`, input: { features: b64Fp32(mlpFeatures(i)) } }))) });
      const results = await Promise.all([0, 1, 2].map(() => p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' })));
      const statuses = results.map((r) => r.status).sort();
      expect(statuses.filter((s) => s === 200).length, `round ${round}: ${statuses}`).to.be.at.most(1);
      expect(statuses.every((s) => s === 200 || s === 409)).to.equal(true);
      const ended = await waitForBatchEnd(p, batch.id);
      const lines = await readResults(p, batch.id);
      consistent(ended, lines);
      expect(ended.request_counts.total).to.equal(n);
      if (statuses.includes(200)) expect(ended.status).to.equal('canceled');
      else expect(ended.status).to.equal('completed');
      // Counts do not move after the end.
      expect((await getBatch(p, batch.id)).request_counts).to.deep.equal(ended.request_counts);
    }
  });
});

describe('a batch before any worker', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  // docs/api.md: started_at is when a worker first started on it; the gateway ending a chunk of invalid lines is not that.
  it('a batch whose first chunk is all invalid stays queued, started_at null, until a worker starts on it', async () => {
    const lines: unknown[] = Array.from({ length: 2048 }, () => 'not json');
    lines.push({ custom_id: 'v', input: { features: mlpFeatures(0) } });
    const batch = await submitBatch(p, { ndjson: toNdjson(lines) });
    expect(batch.request_counts).to.deep.equal({ total: 2049, succeeded: 0, failed: 2048, canceled: 0 });
    const now = await getBatch(p, batch.id);
    expect({ status: now.status, started_at: now.started_at }).to.deep.equal({ status: 'queued', started_at: null });
  });
});
