import zlib from 'node:zlib';
import { expect } from 'chai';
import type { Batch, BatchList } from '@infer/contract';
import { mlpFeatures, readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { OTHER_TENANT_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * uploads that are bad as a whole must each get a clear 4xx problem+json, never a 500
 * or a half-created batch; tenant isolation on every batch route.
 */
describe('bad uploads and isolation', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ env: { MAX_BODY_BYTES: String(64 * 1024) } });
  });
  after(async () => {
    await p.close();
  });

  const item = (i: number, id = `c${i}`) => ({ custom_id: id, input: { features: mlpFeatures(i) } });

  async function listIds(key?: string): Promise<string[]> {
    const res = await p.api('/v1/batches?limit=100', key ? { key } : {});
    expect(res.status).to.equal(200);
    return ((await res.json()) as BatchList).data.map((b) => b.id);
  }

  async function expectProblem(res: Response, status: number, code: string): Promise<void> {
    const text = await res.text();
    expect(res.status, text).to.equal(status);
    expect(res.headers.get('content-type') ?? '').to.match(/^application\/problem\+json/);
    expect((JSON.parse(text) as { code: string }).code, text).to.equal(code);
  }

  const ndjson = (body: Buffer | string, headers: Record<string, string> = {}, query = 'model=mlp') =>
    p.api(`/v1/batches?${query}`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...headers }, body });

  const bad: Array<[string, () => Promise<Response>, number, string]> = [
    ['an empty NDJSON body', () => ndjson(''), 400, 'invalid_input'],
    ['an NDJSON body of only blank lines', () => ndjson('\n\r\n  \t\n\n'), 400, 'invalid_input'],
    ['an NDJSON body of only a byte order mark', () => ndjson('\uFEFF'), 400, 'invalid_input'],
    ['a gzip of nothing', () => ndjson(zlib.gzipSync(Buffer.alloc(0)), { 'content-encoding': 'gzip' }), 400, 'invalid_input'],
    ['zero bytes said to be gzip', () => ndjson(Buffer.alloc(0), { 'content-encoding': 'gzip' }), 400, 'invalid_json'],
    ['NDJSON said to be gzip that is not', () => ndjson(toNdjson([item(0), item(1)]), { 'content-encoding': 'gzip' }), 400, 'invalid_json'],
    ['a gzip cut inside its first line', () => ndjson(zlib.gzipSync(toNdjson([item(0), item(1)])).subarray(0, 40), { 'content-encoding': 'gzip' }), 400, 'invalid_json'],
    ['a brotli stream cut short', () => ndjson(zlib.brotliCompressSync(toNdjson([item(0), item(1), item(2)])).subarray(0, 30), { 'content-encoding': 'br' }), 400, 'invalid_json'],
    ['two codings', () => ndjson(toNdjson([item(0)]), { 'content-encoding': 'gzip, gzip' }), 415, 'unsupported_media_type'],
    ['an unknown query parameter', () => ndjson(toNdjson([item(0)]), {}, 'model=mlp&metadata=x'), 400, 'invalid_input'],
    ['no model', () => ndjson(toNdjson([item(0)]), {}, ''), 400, 'invalid_input'],
    ['model given twice', () => ndjson(toNdjson([item(0)]), {}, 'model=mlp&model=mlp'), 400, 'invalid_input'],
    ['an unknown model', () => ndjson(toNdjson([item(0)]), {}, 'model=nope'), 404, 'model_not_found'],
    ['an unknown version', () => ndjson(toNdjson([item(0)]), {}, 'model=mlp&version=99'), 404, 'version_not_found'],
    ['form data', () => p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1' }), 415, 'unsupported_media_type'],
    ['a JSON body cut off', () => p.api('/v1/batches', { method: 'POST', body: '{"model":"mlp","items":[' }), 400, 'invalid_json'],
    ['a JSON array body', () => p.api('/v1/batches', { method: 'POST', body: '[]' }), 400, 'invalid_json'],
    ['a JSON body with items not an array', () => p.api('/v1/batches', { method: 'POST', body: '{"model":"mlp","items":{}}' }), 400, 'invalid_input'],
    ['a JSON body with no items', () => p.api('/v1/batches', { method: 'POST', body: '{"model":"mlp","items":[]}' }), 400, 'invalid_input'],
    ['a JSON gzip bomb over MAX_BODY_BYTES', () => p.api('/v1/batches', { method: 'POST', headers: { 'content-encoding': 'gzip' }, body: zlib.gzipSync(JSON.stringify({ model: 'mlp', items: Array.from({ length: 400 }, (_, i) => item(i)) })) }), 413, 'payload_too_large'],
    ['a JSON gzip cut off', () => p.api('/v1/batches', { method: 'POST', headers: { 'content-encoding': 'gzip' }, body: zlib.gzipSync(JSON.stringify({ model: 'mlp', items: [item(0)] })).subarray(0, 30) }), 400, 'invalid_json'],
  ];

  for (const [what, send, status, code] of bad) {
    it(`${what}: ${status} ${code} as problem+json, and no batch left in the list`, async () => {
      const before = await listIds();
      await expectProblem(await send(), status, code);
      expect(await listIds()).to.deep.equal(before);
    });
  }

  it("another tenant's batch is 404 batch_not_found on get, results and cancel, and a 400 cursor in its list; the owner's batch is untouched", async () => {
    const batch = await submitBatch(p, { ndjson: toNdjson([item(0), item(1)]) });
    await waitForBatchEnd(p, batch.id);
    for (const [path, method] of [[`/v1/batches/${batch.id}`, 'GET'], [`/v1/batches/${batch.id}/results`, 'GET'], [`/v1/batches/${batch.id}/cancel`, 'POST'], [`/v1/batches/${batch.id}/webhook_deliveries`, 'GET']] as const) {
      const res = await p.api(path, { method, key: OTHER_TENANT_KEY });
      await expectProblem(res, 404, 'batch_not_found');
    }
    await expectProblem(await p.api(`/v1/batches?after=${batch.id}`, { key: OTHER_TENANT_KEY }), 400, 'invalid_input');
    expect(await listIds(OTHER_TENANT_KEY)).to.not.include(batch.id);
    const again = (await (await p.api(`/v1/batches/${batch.id}`)).json()) as Batch;
    expect(again.status).to.equal('completed');
    expect((await readResults(p, batch.id)).map((l) => l.custom_id)).to.deep.equal(['c0', 'c1']);
  });
});
