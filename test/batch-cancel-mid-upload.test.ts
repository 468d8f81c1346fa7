import { expect } from 'chai';
import type { Batch, BatchList } from '@infer/contract';
import { b64Fp32, getBatch, mlpFeatures, readResults, streamedUpload } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

describe('cancel while the upload still streams and workers run its first chunks', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ env: { TENANT_MAX_OPEN_BATCHES: '1' } });
  });
  after(async () => {
    await p.close();
  });

  it('one line per item, counts agree, the rest of the body is dropped, slot comes free', async () => {
    const line = (i: number) => (i % 777 === 1 ? 'bad' : JSON.stringify({ custom_id: `u${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })) + '\n';
    const { req, answer } = streamedUpload(p);
    let i = 0;
    const part = (k: number) => {
      let s = '';
      for (const end = i + k; i < end; i++) s += line(i);
      return s;
    };
    req.write(part(2048 * 3 + 5));
    const seen = await waitUntil(async () => {
      const list = (await (await p.api('/v1/batches')).json()) as BatchList;
      const b = list.data[0];
      return b && b.request_counts.succeeded > 0 ? b : null;
    }, 20_000, 'the first chunk to run while uploading');
    const c = await p.api(`/v1/batches/${seen.id}/cancel`, { method: 'POST' });
    expect(c.status).to.equal(200);
    const canceled = (await c.json()) as Batch;
    req.write(part(2048 * 3));
    req.end();
    const res = await answer;
    expect(res.status, res.body).to.equal(202);
    const final = await getBatch(p, seen.id);
    expect(final.status).to.equal('canceled');
    expect(final.request_counts).to.deep.equal(canceled.request_counts);
    const cc = final.request_counts;
    expect(cc.total).to.equal(cc.succeeded + cc.failed + cc.canceled);
    const lines = await readResults(p, seen.id);
    expect(lines.length).to.equal(cc.total);
    lines.forEach((l, k) => expect(l.index).to.equal(k));
    const by = (s: string) => lines.filter((l) => l.status === s).length;
    expect({ succeeded: by('succeeded'), failed: by('failed'), canceled: by('canceled') }).to.deep.equal({ succeeded: cc.succeeded, failed: cc.failed, canceled: cc.canceled });
    const again = await p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: line(0) });
    expect(again.status).to.equal(202);
  });
});
