import { expect } from 'chai';
import { DEFAULT_CHUNK_LIMITS, type BatchModel } from '../apps/gateway/src/batches/chunk-builder.js';
import { buildChunks } from '../apps/gateway/src/batches/chunk-sources.js';
import { ndjsonLines } from '../apps/gateway/src/batches/ndjson-lines.js';
import { ElemType, encodeModel, initializer, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

/**
 * A model with a small input and a wide output (a 128×128 mask, a
 * vocabulary's logits) in a bulk batch. Chunks were sized by their inputs
 * alone, so 4-byte inputs made 2048-row chunks of 128 MiB of outputs, and a
 * chunk's results were printed as one string on download: past V8's longest
 * string, the batch completed and its results answered 500 every time. Chunks
 * are now sized by their fixed output bytes too (16 MiB), and results are
 * printed a MiB at a time (test/batches-units covers the pieces).
 */

const WIDTH = 16_384;

/** Batched: y[N,WIDTH] = x[N,1] · w[1,WIDTH]. A 4-byte input, a 64 KiB output a row. */
function wideModel(): Uint8Array {
  return encodeModel({
    name: 'wide16k',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', 1])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', WIDTH])],
    nodes: [node('MatMul', ['x', 'w'], ['y'])],
    initializers: [initializer('w', ElemType.FLOAT, [1, WIDTH], Float32Array.from({ length: WIDTH }, (_, i) => 1 + i))],
  });
}

describe('batches: a model with a wide output', function () {
  this.timeout(120_000);

  it('makes chunks of at most 16 MiB of outputs (256 rows of 64 KiB), not 2048 rows', async () => {
    const model: BatchModel = {
      name: 'wide',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [WIDTH] }],
    };
    async function* body() {
      yield Buffer.from(toNdjson(Array.from({ length: 600 }, (_, i) => ({ input: { x: [i] } }))));
    }
    const sizes: number[] = [];
    for await (const chunk of buildChunks(model, DEFAULT_CHUNK_LIMITS, ndjsonLines(body(), 1000))) sizes.push(chunk.count);
    expect(sizes).to.deep.equal([256, 256, 88]);
    // A variable output's size is unknown up front: its chunks are sized by their inputs, as before.
    sizes.length = 0;
    for await (const chunk of buildChunks({ ...model, outputs: [{ name: 'y', datatype: 'FP32', shape: [-1] }] }, DEFAULT_CHUNK_LIMITS, ndjsonLines(body(), 1000))) sizes.push(chunk.count);
    expect(sizes).to.deep.equal([600]);
  });

  it('bounds chunks by a fixed wide output even beside a variable one (a count, ids beside an embedding)', async () => {
    const model: BatchModel = {
      name: 'wide-plus-variable',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }],
      outputs: [
        { name: 'y', datatype: 'FP32', shape: [WIDTH] },
        { name: 'n', datatype: 'INT64', shape: [-1] },
      ],
    };
    async function* body() {
      yield Buffer.from(toNdjson(Array.from({ length: 600 }, (_, i) => ({ input: { x: [i] } }))));
    }
    const sizes: number[] = [];
    for await (const chunk of buildChunks(model, DEFAULT_CHUNK_LIMITS, ndjsonLines(body(), 1000))) sizes.push(chunk.count);
    expect(sizes).to.deep.equal([256, 256, 88]);
  });

  describe('through a gateway and a worker', () => {
    let repo: TempModelRepo;
    let p: TestPlatform;
    before(async () => {
      repo = tempModelRepo({ wide: { onnx: wideModel(), config: { max_batch_size: 64, max_delay_ms: 2 } } });
      p = await startPlatform({ models: repo.root });
    });
    after(async () => {
      await p?.close();
      repo?.remove();
    });

    it('runs 600 rows and their results file downloads whole, every row once, in order, with its values', async () => {
      const n = 600;
      const batch = await submitBatch(p, { ndjson: toNdjson(Array.from({ length: n }, (_, i) => ({ custom_id: `r${i}`, input: { x: [i] } }))), query: 'model=wide' });
      const ended = await waitForBatchEnd(p, batch.id, 90_000);
      expect(ended.status).to.equal('completed');
      expect(ended.request_counts).to.deep.equal({ total: n, succeeded: n, failed: 0, canceled: 0 });

      const res = await p.api(`/v1/batches/${batch.id}/results`, { key: TEST_KEY });
      expect(res.status).to.equal(200);
      const lines = (await res.text()).trimEnd().split('\n');
      expect(lines).to.have.length(n);
      for (const i of [0, 1, 255, 256, 599]) {
        const line = JSON.parse(lines[i]!) as { index: number; custom_id: string; output: { y: number[] } };
        expect([line.index, line.custom_id]).to.deep.equal([i, `r${i}`]);
        expect(line.output.y).to.have.length(WIDTH);
        expect([line.output.y[0], line.output.y[WIDTH - 1]]).to.deep.equal([i, i * WIDTH]);
      }
    });
  });
});
