import path from 'node:path';
import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { expectProblem, postJob, runJob } from './helpers/jobs.js';
import { readResults, submitBatch, waitForBatchEnd } from './helpers/batches.js';

describe('tensors: edge inputs end to end', () => {
  let repo: TempModelRepo;
  let p: TestPlatform;
  const sessions: ort.InferenceSession[] = [];
  const session = async (name: string) => {
    const s = await ort.InferenceSession.create(path.join(FIXTURE_MODELS, name, '1', 'model.onnx'));
    sessions.push(s);
    return s;
  };
  before(async () => {
    repo = tempModelRepo({
      'seq-sum': { from: path.join(FIXTURE_MODELS, 'seq-sum') },
      'scale-int': { from: path.join(FIXTURE_MODELS, 'scale-int') },
      'scalar-double': { from: path.join(FIXTURE_MODELS, 'scalar-double') },
      'add-fixed': { from: path.join(FIXTURE_MODELS, 'add-fixed') },
    });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await Promise.allSettled(sessions.map((s) => s.release()));
    await p?.close();
    repo?.remove();
  });

  it('an empty variable-length input (a 0-sized dimension) runs as ONNX Runtime runs it, in every form', async () => {
    const s = await session('seq-sum');
    const direct = await s.run({ seq: new ort.Tensor('float32', new Float32Array(0), [1, 0]) });
    const expected = Array.from(direct.total!.data as Float32Array);
    for (const seq of [[], { datatype: 'FP32', shape: [0], data: [] }, { datatype: 'FP32', shape: [0], b64: '' }]) {
      const job = await runJob(p, { model: 'seq-sum', input: { seq } });
      expect(job.status, `${JSON.stringify(seq)}: ${JSON.stringify(job.error)}`).to.equal('succeeded');
      expect(job.output!.total, JSON.stringify(seq)).to.deep.equal(expected);
    }
  });

  it('INT64 at ±(2^53 − 1) runs exactly; 2^53 and fractional values are refused', async () => {
    const s = await session('scale-int');
    const x = [9007199254740991, -9007199254740991, 0];
    const direct = await s.run({ x: new ort.Tensor('int64', BigInt64Array.from(x, BigInt), [1, 3]) });
    const job = await runJob(p, { model: 'scale-int', input: { x } });
    expect(job.status).to.equal('succeeded');
    expect(job.output!.y).to.deep.equal(Array.from(direct.y!.data as BigInt64Array, Number));
    expect(job.output!.flag).to.deep.equal(Array.from(direct.flag!.data as Uint8Array, (v) => v !== 0));
    for (const bad of [[2 ** 53, 0, 0], [1.5, 0, 0], [true, 0, 0], ['1', 0, 0]]) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'scale-int', input: { x: bad } }) });
      const problem = await expectProblem(res, 422, 'invalid_input');
      expect(problem.detail).to.include('"x"');
    }
  });

  it('a scalar input: bare value, typed data and b64; -0 and tiny values as ONNX Runtime gives them', async () => {
    const s = await session('scalar-double');
    for (const v of [-0, 5e-324, 2.5, -1.7976931348623157e308 / 4]) {
      const direct = await s.run({ v: new ort.Tensor('float64', Float64Array.of(v), []) });
      const want = (direct.w!.data as Float64Array)[0]!;
      const b64 = Buffer.from(Float64Array.of(v).buffer).toString('base64');
      for (const input of [v, { datatype: 'FP64', shape: [], data: [v] }, { datatype: 'FP64', shape: [], b64 }]) {
        const job = await runJob(p, { model: 'scalar-double', input: { v: input } });
        expect(job.status).to.equal('succeeded');
        expect(job.output!.w, `${v}`).to.equal(JSON.parse(JSON.stringify(want)));
      }
    }
    for (const bad of [[1], { datatype: 'FP64', shape: [1], data: [1] }, { datatype: 'FP64', shape: [], b64: 'AAAAAAAA+H8=' }]) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'scalar-double', input: { v: bad } }) });
      await expectProblem(res, 422, 'invalid_input');
    }
  });

  it('a batch of the same edge items agrees with the interactive path', async () => {
    const items = [
      { custom_id: 'empty', input: { seq: [] } },
      { custom_id: 'b64-empty', input: { seq: { datatype: 'FP32', shape: [0], b64: '' } } },
      { custom_id: 'negzero', input: { seq: [-0, -0] } },
      { custom_id: 'overflow', input: { seq: [1e39] } },
      { custom_id: 'nan-b64', input: { seq: { datatype: 'FP32', shape: [1], b64: Buffer.from(Float32Array.of(NaN).buffer).toString('base64') } } },
      { custom_id: 'urlsafe', input: { seq: { datatype: 'FP32', shape: [1], b64: '__8AAA==' } } },
      { custom_id: 'unpadded', input: { seq: { datatype: 'FP32', shape: [1], b64: 'AACAPw' } } },
    ];
    for (const form of ['ndjson', 'json'] as const) {
      const batch = await submitBatch(p, form === 'json' ? { json: { model: 'seq-sum', items } } : { ndjson: items.map((i) => JSON.stringify(i)).join('\n'), query: 'model=seq-sum' });
      await waitForBatchEnd(p, batch.id);
      const lines = await readResults(p, batch.id);
      for (const [k, item] of items.entries()) {
        const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: JSON.stringify({ model: 'seq-sum', input: item.input }) });
        const body = (await res.json()) as { status?: string; output?: unknown; code?: string };
        const line = lines[k]!;
        if (res.status === 422) {
          expect(line.status, `${form} ${item.custom_id}`).to.equal('failed');
          expect(line.error!.code).to.equal('invalid_input');
        } else {
          expect(body.status, `${item.custom_id}`).to.equal('succeeded');
          expect(line.status, `${form} ${item.custom_id}: ${JSON.stringify(line.error)}`).to.equal('succeeded');
          expect(line.output, `${form} ${item.custom_id}`).to.deep.equal(body.output);
        }
      }
    }
  });

  it('add-fixed (unbatched, fixed [2,3]): nested, data and b64 give ONNX Runtime results; wrong shapes are 422', async () => {
    const s = await session('add-fixed');
    const a = Float32Array.of(0.1, -0, 3.4028234663852886e38, 1e-45, -2, 7);
    const b = Float32Array.of(0.2, -0, 0, 1e-45, 2, 1e-7);
    const direct = await s.run({ a: new ort.Tensor('float32', a, [2, 3]), b: new ort.Tensor('float32', b, [2, 3]) });
    const want = JSON.parse(JSON.stringify([Array.from((direct.sum!.data as Float32Array).subarray(0, 3)), Array.from((direct.sum!.data as Float32Array).subarray(3))]));
    const nested = (x: Float32Array) => [Array.from(x.subarray(0, 3)), Array.from(x.subarray(3))];
    const job = await runJob(p, { model: 'add-fixed', input: { a: nested(a), b: { datatype: 'FP32', shape: [2, 3], b64: Buffer.from(b.buffer).toString('base64') } } });
    expect(job.status).to.equal('succeeded');
    expect(job.output!.sum).to.deep.equal(want);
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'add-fixed', input: { a: [[1, 2, 3]], b: nested(b) } }) });
    await expectProblem(res, 422, 'invalid_input');
    const { res: r2 } = await postJob(p, { model: 'add-fixed', input: { a: nested(a), b: nested(b) } });
    expect(r2.status).to.equal(202);
  });
});
