import { expect } from 'chai';
import { mlpFeatures, readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md "Items": `custom_id` (at most 512 characters) yours, echoed in its result line.
 * A custom_id of 300 characters outside the BMP (each two UTF-16 code units) is within the limit.
 */
describe('batches: custom_id of characters outside the BMP', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p.close();
  });

  const id = '😀'.repeat(300); // 300 characters, 600 UTF-16 code units
  const items = [
    { custom_id: 'plain', input: { features: mlpFeatures(0) } },
    { custom_id: id, input: { features: mlpFeatures(1) } },
  ];

  for (const form of ['json', 'ndjson'] as const) {
    it(`${form} form: a 300-character emoji custom_id is echoed in its result line, not dropped`, async () => {
      const batch = form === 'json' ? await submitBatch(p, { json: { model: 'mlp', items } }) : await submitBatch(p, { ndjson: toNdjson(items) });
      await waitForBatchEnd(p, batch.id);
      const lines = await readResults(p, batch.id);
      expect(lines).to.have.length(2);
      expect(lines[0]!.custom_id).to.equal('plain');
      // The item is accepted and runs (status succeeded), so its custom_id must come back: it is the
      // only way to join a result to its request.
      expect(lines[1]!.status, 'the item runs').to.equal('succeeded');
      expect(lines[1]!.custom_id, 'custom_id of the succeeded item').to.equal(id);
    });
  }

  // At the limit and one past it, counted alike by the JSON form, the NDJSON fast path and its general path.
  const atLimit = ['😀'.repeat(512), '😀'.repeat(513), '\ud800'.repeat(512), '\ud800'.repeat(513), 'é'.repeat(512), 'é'.repeat(513), '\udc00\ud800'.repeat(256)];
  for (const form of ['json', 'ndjson'] as const) {
    it(`${form}: 512 characters fit and are echoed, 513 fail with no id`, async () => {
      const items = atLimit.map((custom_id, i) => ({ custom_id, input: { features: mlpFeatures(i) } }));
      const batch = form === 'json' ? await submitBatch(p, { json: { model: 'mlp', items } }) : await submitBatch(p, { ndjson: toNdjson(items) });
      await waitForBatchEnd(p, batch.id);
      const lines = await readResults(p, batch.id);
      expect(lines.map((l) => [l.status, l.custom_id === atLimit[l.index] ? 'same' : l.custom_id === null ? 'null' : 'other'])).to.deep.equal([
        ['succeeded', 'same'], ['failed', 'null'], ['succeeded', 'same'], ['failed', 'null'], ['succeeded', 'same'], ['failed', 'null'], ['succeeded', 'same'],
      ]);
    });
  }
});
