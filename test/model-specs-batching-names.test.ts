import { expect } from 'chai';
import { deriveSpecs, ModelRepository, type OrtValueMetadata } from '@infer/models';
import { sharedDimMismatch } from '@infer/tensors';
import { SHIPPED_MODELS } from './helpers/platform.js';

/**
 * Which models are batched since inputs that name their first dimension differently are not stacked
 * (README "Batching follows the model"): an unnamed dimension, or a name an exporter made up for each
 * input, says nothing and still batches; the shipped models stay batched.
 */
const t = (name: string, shape: Array<number | string>): OrtValueMetadata => ({ name, isTensor: true, type: 'float32', shape });

describe('model specs: deriveSpecs batching after the input-axis-name rule', function () {
  it('an unnamed dynamic first dim (-1) beside a named one is still batched', () => {
    expect(deriveSpecs([t('a', ['N', 2]), t('b', [-1, 2])], [t('y', ['M', 2])]).batched).to.equal(true);
  });
  it('an empty-string name beside a named one is still batched', () => {
    expect(deriveSpecs([t('a', ['N', 2]), t('b', ['', 2])], [t('y', ['N', 2])]).batched).to.equal(true);
  });
  it('inputs sharing one name, outputs named otherwise: batched', () => {
    expect(deriveSpecs([t('a', ['batch', 2]), t('b', ['batch', 3])], [t('y', ['out_b', 2]), t('z', [-1])]).batched).to.equal(true);
  });
  it('"batched": true with names apart: batched, no reason given', () => {
    const s = deriveSpecs([t('a', ['A', 2]), t('b', ['B', 2])], [t('y', ['Y', 2])], { batchAsked: true });
    expect(s.batched).to.equal(true);
    expect(s.unbatchedBecause).to.equal(undefined);
  });
  it('max_batch_size 0 with names apart: unbatched and no "say batched: true" reason', () => {
    const s = deriveSpecs([t('a', ['A', 2]), t('b', ['B', 2])], [t('y', ['Y', 2])], { unbatched: true });
    expect(s.batched).to.equal(false);
    expect(s.unbatchedBecause).to.equal(undefined);
  });
  it('a __proto__ output fails', () => {
    expect(() => deriveSpecs([t('x', ['N', 2])], [t('__proto__', ['N', 2])])).to.throw(/__proto__/);
  });
  // Generated placeholder names carry no more than -1 does; they were batched before a66fc81.
  it('tf2onnx placeholder names (unk__N per input) are batched as before', () => {
    expect(deriveSpecs([t('input_ids', ['unk__12', 128]), t('attention_mask', ['unk__13', 128])], [t('logits', ['unk__14', 2])]).batched).to.equal(true);
  });
  it('paddle2onnx placeholder names (p2o.DynamicDimension.N per input) are batched as before', () => {
    expect(deriveSpecs([t('x', ['p2o.DynamicDimension.0', 8]), t('y', ['p2o.DynamicDimension.1', 8])], [t('out', ['p2o.DynamicDimension.2', 8])]).batched).to.equal(true);
  });
});

describe('model specs: shipped models still batched', function () {
  this.timeout(60_000);
  it('every shipped model version with all first dims dynamic is batched with no unbatchedBecause', async () => {
    const repo = await ModelRepository.load(SHIPPED_MODELS);
    try {
      const all = (repo as unknown as { list?: () => unknown[] }).list?.() ?? [];
      for (const [name, v] of [['mlp', '1'], ['mlp', '2'], ['ocr-cls', '1']] as const) {
        const m = repo.resolve(name, v);
        expect(m.unbatchedBecause, `${name} ${v}`).to.equal(undefined);
        expect(m.batched, `${name} ${v}`).to.equal(true);
      }
      void all;
    } finally {
      await repo.close();
    }
  });
});

describe('model specs: dimensions the inputs share by name (sharedDims)', function () {
  it('names the places of a name given more than once, the batch axis left out of a batched model', () => {
    const s = deriveSpecs([t('ids', ['batch', 'seq']), t('mask', ['batch', 'seq']), t('pos', ['batch', 'seq', 'seq'])], [t('y', ['batch', 'seq'])]);
    expect(s.batched).to.equal(true);
    expect(s.sharedDims).to.deep.equal([
      {
        name: 'seq',
        at: [
          { input: 0, axis: 0 },
          { input: 1, axis: 0 },
          { input: 2, axis: 0 },
          { input: 2, axis: 1 },
        ],
      },
    ]);
  });
  it('names exporters make up, a name given once, and outputs count for nothing; an unbatched model counts its first axis', () => {
    expect(deriveSpecs([t('a', ['N', 'unk__1']), t('b', ['N', 'unk__1']), t('c', ['N', 'h'])], [t('y', ['N', 'h'])]).sharedDims).to.deep.equal([]);
    const unbatched = deriveSpecs([t('a', ['n', 2]), t('b', ['n', 3])], [t('y', [4])]);
    expect(unbatched.batched).to.equal(false);
    expect(unbatched.sharedDims).to.deep.equal([{ name: 'n', at: [{ input: 0, axis: 0 }, { input: 1, axis: 0 }] }]);
  });
  it('sharedDimMismatch: undefined when every place agrees, else the first two places that differ', () => {
    const s = deriveSpecs([t('ids', ['batch', 'seq']), t('mask', ['batch', 'seq'])], [t('y', ['batch', 'seq'])]);
    expect(sharedDimMismatch(s.sharedDims, s.inputs, [[4], [4]])).to.equal(undefined);
    expect(sharedDimMismatch(s.sharedDims, s.inputs, [[4], [5]])).to.equal(
      'the model names dimension "seq" in more than one place, which takes one length: input "ids" has 4 along its axis 0, input "mask" has 5 along its axis 0',
    );
  });
});
