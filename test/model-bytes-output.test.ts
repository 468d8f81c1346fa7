import { expect } from 'chai';
import onnxProto from 'onnx-proto';
import { encodeModel, node, valueInfo, type ElemType } from '../scripts/lib/onnx-builder.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { ModelRepository } from '@infer/models';

const DT = onnxProto.onnx.TensorProto.DataType;

/**
 * A model with a string (BYTES) output: onnxruntime-node runs it, but the
 * platform cannot return its result, so the version fails to load, naming the
 * output, and its jobs are refused up front; they were accepted, then failed
 * every one as "ONNX Runtime failed" (which it had not).
 */
describe('a model with a BYTES (string) output', () => {
  let repo: TempModelRepo;
  let p: TestPlatform;
  before(async () => {
    repo = tempModelRepo({
      str: {
        onnx: encodeModel({
          name: 'to_string',
          inputs: [valueInfo('x', DT.FLOAT as unknown as ElemType, ['batch', 2])],
          outputs: [valueInfo('s', DT.STRING as unknown as ElemType, ['batch', 2])],
          nodes: [node('Cast', ['x'], ['s'], { to: DT.STRING })],
        }),
        config: { max_batch_size: 4, max_delay_ms: 2 },
      },
    });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it('is not served: its version is failed, naming the output, and a job for it is refused up front', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'str', input: { x: [1, 2] } }) });
    const text = await res.text();
    // As for any model none of whose versions loaded.
    expect(res.status, text).to.equal(503);
    expect(JSON.parse(text).code).to.equal('unavailable');
    const loaded = await ModelRepository.load(repo.root, { purpose: 'describe' });
    try {
      expect(loaded.failed().map((f) => `${f.name} ${f.version}: ${f.error}`)).to.deep.equal(['str 1: output "s" is a string tensor (BYTES), which the platform cannot return']);
    } finally {
      await loaded.close();
    }
  });
});
