import path from 'node:path';
import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { bytesJson } from '@infer/tensors';
import { encodeModel, node, valueInfo, type ElemType } from '../scripts/lib/onnx-builder.js';
import { OutputArraySchema } from '../apps/gateway/src/openapi/schemas.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { runJob } from './helpers/jobs.js';
import { readResults, submitBatch, waitForBatchEnd } from './helpers/batches.js';

const FLOAT16 = onnxProto.onnx.TensorProto.DataType.FLOAT16 as unknown as ElemType;
const FLOAT = onnxProto.onnx.TensorProto.DataType.FLOAT as unknown as ElemType;

/** IEEE 754 binary16 bits → the number they stand for. */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Batched: x FP16 [N,3] → y = Cast(x) FP32 [N,3], h = Identity(x) FP16 [N,3]. */
function halfModel(): Uint8Array {
  return encodeModel({
    name: 'half_io',
    inputs: [valueInfo('x', FLOAT16, ['batch', 3])],
    outputs: [valueInfo('y', FLOAT, ['batch', 3]), valueInfo('h', FLOAT16, ['batch', 3])],
    nodes: [node('Cast', ['x'], ['y'], { to: onnxProto.onnx.TensorProto.DataType.FLOAT }), node('Identity', ['x'], ['h'])],
  });
}

// 1.0, -2.0, 0.5 as binary16 bits.
const HALF_BITS = Uint16Array.of(0x3c00, 0xc000, 0x3800);

describe('tensors: output rendering', () => {
  it('bytesJson renders FP16 bytes as the numbers they hold, not their bit patterns', () => {
    const bytes = new Uint8Array(HALF_BITS.buffer.slice(0));
    const json = bytesJson('FP16', bytes, [3]);
    expect(JSON.parse(json)).to.deep.equal([1, -2, 0.5]);
  });

  describe('end to end (real Redis, real ONNX Runtime)', () => {
    let repo: TempModelRepo;
    let p: TestPlatform;
    before(async () => {
      repo = tempModelRepo({
        half: { onnx: halfModel(), config: { max_batch_size: 4, max_delay_ms: 2 } },
        'scalar-double': { from: path.join(FIXTURE_MODELS, 'scalar-double') },
      });
      p = await startPlatform({ models: repo.root });
    });
    after(async () => {
      await p?.close();
      repo?.remove();
    });

    it('an FP16 output comes back as the values ONNX Runtime computed', async () => {
      const session = await ort.InferenceSession.create(path.join(repo.root, 'half', '1', 'model.onnx'));
      const direct = await session.run({ x: new ort.Tensor('float16', HALF_BITS.slice(), [1, 3]) });
      await session.release();
      const expectedY = Array.from(direct.y!.data as Float32Array);
      const expectedH = Array.from(direct.h!.data as Uint16Array, halfToNumber);
      expect(expectedY).to.deep.equal([1, -2, 0.5]);
      expect(expectedH).to.deep.equal([1, -2, 0.5]);

      const job = await runJob(p, {
        model: 'half',
        input: { x: { datatype: 'FP16', shape: [3], b64: Buffer.from(HALF_BITS.buffer).toString('base64') } },
      });
      expect(job.status, JSON.stringify(job.error)).to.equal('succeeded');
      // The FP16 input ran right (its FP32 cast is exact)...
      expect(job.output!.y).to.deep.equal(expectedY);
      // ...but its FP16 output must be the same numbers too, not 15360, 49152, 14336.
      expect(job.output!.h).to.deep.equal(expectedH);
    });

    it('an FP16 output in a batch result line comes back as the values ONNX Runtime computed', async () => {
      const b64 = Buffer.from(HALF_BITS.buffer).toString('base64');
      const batch = await submitBatch(p, { ndjson: JSON.stringify({ custom_id: 'a', input: { x: { datatype: 'FP16', shape: [3], b64 } } }), query: 'model=half' });
      await waitForBatchEnd(p, batch.id);
      const [line] = await readResults(p, batch.id);
      expect(line!.status, JSON.stringify(line!.error)).to.equal('succeeded');
      expect(line!.output!.y).to.deep.equal([1, -2, 0.5]);
      expect(line!.output!.h).to.deep.equal([1, -2, 0.5]);
    });

    it('a succeeded job whose output ONNX Runtime computed as Infinity answers null there, as the OpenAPI OutputArray allows', async () => {
      // 1e308 is a finite FP64 the docs accept; the model triples it, which ONNX Runtime makes Infinity.
      const session = await ort.InferenceSession.create(path.join(FIXTURE_MODELS, 'scalar-double', '1', 'model.onnx'));
      const direct = await session.run({ v: new ort.Tensor('float64', Float64Array.of(1e308), []) });
      await session.release();
      expect((direct.w!.data as Float64Array)[0]).to.equal(Infinity);

      const job = await runJob(p, { model: 'scalar-double', input: { v: 1e308 } });
      expect(job.status).to.equal('succeeded');
      expect(job.output!.w).to.equal(null);
      expect(OutputArraySchema.safeParse(job.output!.w).success, 'the OpenAPI document allows it').to.equal(true);
    });
  });
});
