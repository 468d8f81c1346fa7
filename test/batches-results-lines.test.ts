import { expect } from 'chai';
import type { Batch, BatchResultLine } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, Batches: `GET /v1/batches/{id}/results` is NDJSON, one line
 * per item in submission order, `{index, custom_id, status, output, error}`;
 * and what the OpenAPI document records where the API chose: items that
 * share a `custom_id` are taken, each run (a line is its item's by `index`).
 */

const features = new Array(64).fill(0.5);

describe('batches against the contract', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p?.close();
  });

  async function ended(id: string): Promise<Batch> {
    return waitUntil(async () => {
      const b = (await (await p.api(`/v1/batches/${id}`)).json()) as Batch;
      return b.status === 'completed' || b.status === 'canceled' ? b : null;
    }, 20_000, `batch ${id} to end`);
  }

  it('results: one line per item, indexes 0..n-1 in order, every field present, counts that add up', async () => {
    const lines = [
      JSON.stringify({ custom_id: 'a', input: { features } }),
      '{"input": nope}',
      '',
      JSON.stringify({ input: { features } }),
      JSON.stringify({ custom_id: 'd', input: { features: [1, 2] } }),
      JSON.stringify({ custom_id: 'e', input: { features }, extra: 1 }),
    ];
    const res = await p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines.join('\n') + '\n' });
    expect(res.status).to.equal(202);
    const batch = await ended(((await res.json()) as Batch).id);
    const out = await p.api(`/v1/batches/${batch.id}/results`);
    expect(out.status).to.equal(200);
    expect(out.headers.get('content-type')).to.match(/^application\/x-ndjson\b/);
    const text = await out.text();
    expect(text.endsWith('\n')).to.equal(true);
    const results = text.trimEnd().split('\n').map((l) => JSON.parse(l) as BatchResultLine);
    expect(results.map((r) => r.index)).to.deep.equal([0, 1, 2, 3, 4]);
    for (const r of results) expect(Object.keys(r)).to.deep.equal(['index', 'custom_id', 'status', 'output', 'error']);
    expect(results.map((r) => [r.custom_id, r.status, r.error?.code ?? null])).to.deep.equal([
      ['a', 'succeeded', null],
      [null, 'failed', 'invalid_json'],
      [null, 'succeeded', null],
      ['d', 'failed', 'invalid_input'],
      ['e', 'failed', 'invalid_input'],
    ]);
    const c = batch.request_counts;
    expect(c.total).to.equal(results.length);
    expect(c.succeeded + c.failed + c.canceled).to.equal(c.total);
    expect(c).to.deep.equal({ total: 5, succeeded: 2, failed: 3, canceled: 0 });
  });

  it('items that share a custom_id are taken and each run, as the OpenAPI document records', async () => {
    const res = await p.api('/v1/batches', {
      method: 'POST',
      body: JSON.stringify({ model: 'mlp', items: [{ custom_id: 'same', input: { features } }, { custom_id: 'same', input: { features: features.map((f) => f / 2) } }] }),
    });
    const text = await res.text();
    expect(res.status, text).to.equal(202);
    const batch = await ended((JSON.parse(text) as Batch).id);
    expect(batch.request_counts).to.deep.include({ total: 2, succeeded: 2 });
    const lines = (await (await p.api(`/v1/batches/${batch.id}/results`)).text()).trim().split('\n').map((l) => JSON.parse(l) as BatchResultLine);
    expect(lines.map((l) => [l.index, l.custom_id, l.status])).to.deep.equal([[0, 'same', 'succeeded'], [1, 'same', 'succeeded']]);
    expect(JSON.stringify(lines[0]!.output)).to.not.equal(JSON.stringify(lines[1]!.output));
    const doc = (await (await p.api('/openapi.json', { key: null })).json()) as {
      components: { schemas: Record<string, { properties?: Record<string, { description?: string }> }> };
    };
    expect(doc.components.schemas.BatchItem!.properties?.custom_id?.description).to.match(/not required to be unique/i);
  });
});
