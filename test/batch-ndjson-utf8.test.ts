import { expect } from 'chai';
import type { Batch, BatchResultLine } from '@infer/contract';
import { expectProblem } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md: `invalid_json` is for a body that is "not valid JSON, not
 * UTF-8"; an NDJSON item "that does not parse … becomes a failed item"
 * (`invalid_json (a line that does not parse)`); `custom_id` is "yours,
 * echoed in its result line". JSON text is UTF-8 (RFC 8259 §8.1), and the
 * gateway refuses a jobs or JSON-batch body that is not ("decoding would
 * turn other bytes into U+FFFD and accept what was never sent",
 * http/json-body.ts). An NDJSON line with the same bytes is decoded with
 * replacement instead: accepted, its custom_id rewritten.
 */
const features = new Array<number>(64).fill(0.5);
const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

describe('batches: an NDJSON line that is not UTF-8', function () {
  this.timeout(30_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  it('the JSON batch form refuses the bytes (400 invalid_json): the control', async () => {
    const body = bytes('{"model":"mlp","items":[{"custom_id":"id-', [0xff], `","input":{"features":[${features}]}}]}`);
    await expectProblem(await p.api('/v1/batches', { method: 'POST', headers: { 'content-type': 'application/json' }, body }), 400, 'invalid_json');
  });

  it('fails as an item (invalid_json), rather than being run under a custom_id the client never sent', async () => {
    const lines = bytes(
      // The byte-level fast path (line-scanner.ts) reads this line: plain custom_id, nested floats.
      '{"custom_id":"id-', [0xff], `","input":{"features":[${features}]}}\n`,
      // Another id that differs from the first only in its invalid byte.
      '{"custom_id":"id-', [0xfe], `","input":{"features":[${features}]}}\n`,
      // An escape sends it to the general path (JSON.parse of the line's text).
      '{"custom_id":"id-\\u0041', [0xc0, 0xaf], `","input":{"features":[${features}]}}\n`,
      `{"custom_id":"good","input":{"features":[${features}]}}\n`,
    );
    const res = await p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines });
    const batch = (await res.json()) as Batch;
    expect(res.status, JSON.stringify(batch)).to.equal(202);
    await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
    const results = (await (await p.api(`/v1/batches/${batch.id}/results`)).text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as BatchResultLine);
    const seen = results.map((r) => `${r.index} ${JSON.stringify(r.custom_id)} ${r.status} ${r.error?.code ?? ''}`.trim());
    expect(batch.request_counts, `results: ${seen.join(' | ')}`).to.include({ total: 4, failed: 3 });
    for (const r of results.slice(0, 3)) {
      expect(r.custom_id ?? '', `line ${r.index + 1}: a custom_id the client never sent (${seen.join(' | ')})`).not.to.include('\ufffd');
      expect(r.error?.code, `line ${r.index + 1}: ${seen.join(' | ')}`).to.equal('invalid_json');
    }
  });
});
