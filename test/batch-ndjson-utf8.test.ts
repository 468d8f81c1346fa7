import { expect } from 'chai';
import type { Batch, BatchResultLine } from '@infer/contract';
import { mlpFeatures, readResults, waitForBatchEnd } from './helpers/batches.js';
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
    p = await startPlatform();
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

  it('valid UTF-8 runs with its ids (a BOM on line 1, multi-byte characters); CESU-8 surrogates, overlong forms and bad bytes in any value fail as invalid_json', async () => {
    const f = (i: number) => JSON.stringify(mlpFeatures(i));
    const line = (idBytes: Buffer, i: number, extra = '') => Buffer.concat([Buffer.from('{"custom_id":"'), idBytes, Buffer.from(`","input":{"features":${f(i)}}${extra}}\n`)]);
    const body = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]), line(Buffer.from('ü-€-😀'), 0),
      line(Buffer.from('ü-€-😀'), 1),
      line(Buffer.from([0x61, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]), 2), // CESU-8 surrogate pair
      line(Buffer.from([0x61, 0xc0, 0xaf]), 3), // overlong '/'
      line(Buffer.from('ok'), 4, ',"x":"\xff"'.replace('\xff', '')),
      Buffer.concat([Buffer.from(`{"input":{"features":${f(5)}},"custom_id":"v\u00e9"}\n`)]),
      Buffer.concat([Buffer.from(`{"input":{"fe\u00e9":${f(6)}},"custom_id":"w"}`), Buffer.from([0x0a])]),
      Buffer.concat([Buffer.from(`{"custom_id":"z","input":{"features":${f(7)}},"k":"`), Buffer.from([0xff]), Buffer.from('"}\n')]),
    ]);
    const res = await p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });
    const batch = (await res.json()) as Batch;
    expect(res.status).to.equal(202);
    await waitForBatchEnd(p, batch.id);
    const lines = await readResults(p, batch.id);
    expect(lines.map((l) => `${l.status} ${l.custom_id} ${l.error?.code ?? ''}`)).to.deep.equal([
      'succeeded ü-€-😀 ',
      'succeeded ü-€-😀 ',
      'failed null invalid_json',
      'failed null invalid_json',
      'failed ok invalid_input',
      'succeeded vé ',
      'failed w invalid_input',
      'failed null invalid_json',
    ]);
  });
});
