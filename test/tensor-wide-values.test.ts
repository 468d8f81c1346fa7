import path from 'node:path';
import { expect } from 'chai';
import onnxProto from 'onnx-proto';
import { encodeModel, node, valueInfo, type ElemType } from '../scripts/lib/onnx-builder.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { submitBatch, waitForBatchEnd } from './helpers/batches.js';

/**
 * docs/api.md, tensors and metadata, on values a double cannot hold: 64-bit
 * integers past 2^53 in outputs (printed with all their digits), FP16 in the
 * JSON forms (rounded to the nearest half), metadata integers a double would
 * round (refused, so what comes back is what was sent).
 */

const DT = onnxProto.onnx.TensorProto.DataType as unknown as Record<string, ElemType>;

/** Batched identity of one datatype: y[N,2] = x[N,2]. */
function identity(type: ElemType, name: string): Uint8Array {
  return encodeModel({
    name,
    inputs: [valueInfo('x', type, ['batch', 2])],
    outputs: [valueInfo('y', type, ['batch', 2])],
    nodes: [node('Identity', ['x'], ['y'])],
  });
}

function i64b64(values: bigint[]): string {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigInt64LE(v, 8 * i));
  return b.toString('base64');
}

function u64b64(values: bigint[]): string {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigUInt64LE(v, 8 * i));
  return b.toString('base64');
}

/** The raw JSON text of `"y":[…]` in a response body (JSON.parse would round it). */
function rawOutputY(text: string): string {
  const m = /"y":(\[[^\]]*\])/.exec(text);
  if (!m) throw new Error(`no "y" output in ${text}`);
  return m[1]!;
}

describe('tensors and metadata: values a double cannot hold', function () {
  this.timeout(30_000);
  let repo: TempModelRepo;
  let p: TestPlatform;

  before(async () => {
    repo = tempModelRepo({
      i64: { onnx: identity(DT.INT64!, 'i64'), config: { max_batch_size: 4, max_delay_ms: 2 } },
      u64: { onnx: identity(DT.UINT64!, 'u64'), config: { max_batch_size: 4, max_delay_ms: 2 } },
      f16: { onnx: identity(DT.FLOAT16!, 'f16'), config: { max_batch_size: 4, max_delay_ms: 2 } },
      'seq-sum': { from: path.join(FIXTURE_MODELS, 'seq-sum') },
    });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it('an INT64 / UINT64 output past 2^53 comes back as the integer the model computed, not a rounded double', async () => {
    // The b64 form carries any INT64 (docs/api.md limits only the JSON forms to ±2^53 − 1), and the job runs.
    const i64 = [2n ** 53n + 1n, -(2n ** 62n) - 3n];
    const res = await p.api('/v1/jobs', {
      method: 'POST',
      headers: { prefer: 'wait=20' },
      body: JSON.stringify({ model: 'i64', input: { x: { datatype: 'INT64', shape: [2], b64: i64b64(i64) } } }),
    });
    const text = await res.text();
    expect(res.status, text).to.equal(200);
    expect(JSON.parse(text).status).to.equal('succeeded');
    // "output maps each model output name to a nested JSON array of the instance's result"
    expect(rawOutputY(text), 'INT64 output printed through a double').to.equal(`[${i64.join(',')}]`);

    const u64 = [2n ** 64n - 1n, 3n];
    const res2 = await p.api('/v1/jobs', {
      method: 'POST',
      headers: { prefer: 'wait=20' },
      body: JSON.stringify({ model: 'u64', input: { x: { datatype: 'UINT64', shape: [2], b64: u64b64(u64) } } }),
    });
    const text2 = await res2.text();
    expect(res2.status, text2).to.equal(200);
    // 18446744073709552000 is not even a UINT64.
    expect(rawOutputY(text2), 'UINT64 output printed through a double').to.equal(`[${u64.join(',')}]`);
  });

  it("an INT64 output past 2^53 in a batch's results line is the integer the model computed", async () => {
    const i64 = [2n ** 53n + 1n, 1n];
    const batch = await submitBatch(p, { json: { model: 'i64', items: [{ custom_id: 'big', input: { x: { datatype: 'INT64', shape: [2], b64: i64b64(i64) } } }] } });
    const ended = await waitForBatchEnd(p, batch.id);
    expect(ended.request_counts.succeeded).to.equal(1);
    const res = await p.api(`/v1/batches/${batch.id}/results`);
    const text = await res.text();
    expect(res.status, text).to.equal(200);
    expect(rawOutputY(text), 'INT64 result printed through a double').to.equal(`[${i64.join(',')}]`);
  });

  it('an FP16 input is taken in all three forms (nested arrays, flat data, b64), as the contract allows for every input', async () => {
    const b64 = Buffer.from(Uint16Array.of(0x3800, 0x3c00).buffer).toString('base64'); // 0.5, 1.0
    const forms: Record<string, unknown> = {
      nested: [0.5, 1],
      data: { datatype: 'FP16', shape: [2], data: [0.5, 1] },
      b64: { datatype: 'FP16', shape: [2], b64 },
    };
    const answers: Record<string, string> = {};
    for (const [form, x] of Object.entries(forms)) {
      const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: JSON.stringify({ model: 'f16', input: { x } }) });
      const body = (await res.json()) as { status?: string; output?: { y: number[] }; detail?: string };
      answers[form] = `${res.status} ${body.status ?? ''} ${JSON.stringify(body.output?.y ?? body.detail)}`;
    }
    expect(answers).to.deep.equal({
      nested: '200 succeeded [0.5,1]',
      data: '200 succeeded [0.5,1]',
      b64: '200 succeeded [0.5,1]',
    });
  });

  it('metadata holding an integer past 2^53 - 1 is refused (it would come back as another integer); one within is echoed', async () => {
    const refused = await p.api('/v1/jobs', { method: 'POST', body: '{"model":"seq-sum","input":{"seq":[1]},"metadata":{"order":{"id":1234567890123456789}}}' });
    const problem = (await refused.json()) as { code: string; detail: string };
    expect(`${refused.status} ${problem.code}`).to.equal('422 invalid_input');
    expect(problem.detail).to.include('metadata.id');
    const kept = await p.api('/v1/jobs', { method: 'POST', body: '{"model":"seq-sum","input":{"seq":[1]},"metadata":{"id":9007199254740991,"as_string":"1234567890123456789"}}' });
    const text = await kept.text();
    expect(kept.status, text).to.equal(202);
    expect(/"metadata":(\{[^}]*\})/.exec(text)?.[1]).to.equal('{"id":9007199254740991,"as_string":"1234567890123456789"}');
  });

  it('an FP16 value in a JSON form is rounded to the nearest half; one that would round to infinity is refused', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: JSON.stringify({ model: 'f16', input: { x: [0.1, -65504] } }) });
    const body = (await res.json()) as { status: string; output: { y: number[] } };
    // 0.1's nearest half is 0.0999755859375 (0x2e66); -65504 is the largest half, exactly.
    expect(body.output.y).to.deep.equal([0.0999755859375, -65504]);
    const over = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'f16', input: { x: { datatype: 'FP16', shape: [2], data: [1, 65520] } } }) });
    const problem = (await over.json()) as { code: string; detail: string };
    expect(`${over.status} ${problem.code}`).to.equal('422 invalid_input');
    expect(problem.detail).to.include('overflows FP16');
  });
});
