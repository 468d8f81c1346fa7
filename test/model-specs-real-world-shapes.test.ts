import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ElemType, encodeModel, initializer, node } from '../scripts/lib/onnx-builder.js';
import { DT, tensorInfo } from './helpers/int-graphs.js';
import { expectProblem, getJob, postJob } from './helpers/jobs.js';
import { readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Real-world-shaped ONNX models that are not the shipped ones, served through
 * the model repository: a text model of two [N, seq] inputs, every datatype,
 * outputs that are inputs, initializers among the inputs, zero-size and
 * scalar shapes, odd names, corrupt and differing versions. Each model is
 * built on the spot; what the platform answers is compared with a direct
 * onnxruntime-node run where it computes something.
 */

const INT64_AXES = (name: string, axes: number[]) => initializer(name, ElemType.INT64, [axes.length], axes);

/** A text model: ids INT64 [N, seq], mask FP32 [N, seq] → scaled [N, seq] = float(ids) * mask, total [N, 1] = sum over seq. */
function textModel(): Uint8Array {
  return encodeModel({
    name: 'text',
    inputs: [tensorInfo('ids', DT.INT64, ['batch', 'seq']), tensorInfo('mask', DT.FLOAT, ['batch', 'seq'])],
    outputs: [tensorInfo('scaled', DT.FLOAT, ['batch', 'seq']), tensorInfo('total', DT.FLOAT, ['batch', 1])],
    nodes: [node('Cast', ['ids'], ['idsf'], { to: DT.FLOAT }), node('Mul', ['idsf', 'mask'], ['scaled']), node('ReduceSum', ['scaled', 'axes'], ['total'], { keepdims: 1 })],
    initializers: [INT64_AXES('axes', [1])],
  });
}

/** An image model with a fixed batch of 1: x[1, 3, H, W] → Relu. */
function fixedBatchModel(): Uint8Array {
  return encodeModel({
    name: 'fixed1',
    inputs: [tensorInfo('x', DT.FLOAT, [1, 3, 'H', 'W'])],
    outputs: [tensorInfo('y', DT.FLOAT, [1, 3, 'H', 'W'])],
    nodes: [node('Relu', ['x'], ['y'])],
  });
}

const TYPES = {
  FP16: DT.FLOAT16,
  FP64: DT.DOUBLE,
  INT8: DT.INT8,
  UINT8: DT.UINT8,
  INT16: DT.INT16,
  UINT16: DT.UINT16,
  INT32: DT.INT32,
  UINT32: DT.UINT32,
  INT64: DT.INT64,
  UINT64: DT.UINT64,
  BOOL: DT.BOOL,
} as const;

/** One input per datatype, each passed through (Identity) to an output of its own. */
function everyTypeModel(): Uint8Array {
  const names = Object.keys(TYPES);
  return encodeModel({
    name: 'types',
    inputs: names.map((n) => tensorInfo(`x_${n}`, TYPES[n as keyof typeof TYPES], ['N', 2])),
    outputs: names.map((n) => tensorInfo(`y_${n}`, TYPES[n as keyof typeof TYPES], ['N', 2])),
    nodes: names.map((n) => node('Identity', [`x_${n}`], [`y_${n}`])),
  });
}

/** A STRING input whose shape is the (INT64) output: loads, and its input cannot be given. */
function stringInputModel(): Uint8Array {
  return encodeModel({ name: 'str', inputs: [tensorInfo('x', DT.STRING, [2])], outputs: [tensorInfo('s', DT.INT64, [1])], nodes: [node('Shape', ['x'], ['s'])] });
}

/** An output that is also the input (x passed through as a graph output) beside y = -x. */
function passthroughModel(): Uint8Array {
  return encodeModel({
    name: 'pass',
    inputs: [tensorInfo('x', DT.FLOAT, ['N', 2])],
    outputs: [tensorInfo('x', DT.FLOAT, ['N', 2]), tensorInfo('y', DT.FLOAT, ['N', 2])],
    nodes: [node('Neg', ['x'], ['y'])],
  });
}

/** An initializer listed among the graph inputs (an optional input with a default): y = x + b, b = [1, 2]. */
function initializerInputModel(): Uint8Array {
  return encodeModel({
    name: 'initin',
    inputs: [tensorInfo('x', DT.FLOAT, ['N', 2]), tensorInfo('b', DT.FLOAT, [2])],
    outputs: [tensorInfo('y', DT.FLOAT, ['N', 2])],
    nodes: [node('Add', ['x', 'b'], ['y'])],
    initializers: [initializer('b', ElemType.FLOAT, [2], [1, 2])],
  });
}

/** x[N, 0] → -x: instances with no elements. */
function zeroDimModel(): Uint8Array {
  return encodeModel({ name: 'zero', inputs: [tensorInfo('x', DT.FLOAT, ['N', 0])], outputs: [tensorInfo('y', DT.FLOAT, ['N', 0])], nodes: [node('Neg', ['x'], ['y'])] });
}

/** x[N, 2] → one scalar for the whole tensor (ReduceSum, keepdims 0): not batch-major. */
function scalarOutModel(): Uint8Array {
  return encodeModel({
    name: 'scalarout',
    inputs: [tensorInfo('x', DT.FLOAT, ['N', 2])],
    outputs: [tensorInfo('s', DT.FLOAT, [])],
    nodes: [node('ReduceSum', ['x'], ['s'], { keepdims: 0 })],
  });
}

function builtinNamesModel(): Uint8Array {
  return encodeModel({
    name: 'builtin',
    inputs: [tensorInfo('toString', DT.FLOAT, ['N', 2])],
    outputs: [tensorInfo('hasOwnProperty', DT.FLOAT, ['N', 2])],
    nodes: [node('Neg', ['toString'], ['hasOwnProperty'])],
  });
}

const LONG = 'input/' + 'x'.repeat(2000) + ':0';
const ODD = 'ü 名 "quoted" \\ back\nslash.0';
function oddNamesModel(): Uint8Array {
  return encodeModel({
    name: 'odd',
    inputs: [tensorInfo(LONG, DT.FLOAT, ['N', 2])],
    outputs: [tensorInfo(ODD, DT.FLOAT, ['N', 2])],
    nodes: [node('Neg', [LONG], [ODD])],
  });
}

/** A model with no inputs at all: a constant. */
function noInputsModel(): Uint8Array {
  return encodeModel({ name: 'noin', inputs: [], outputs: [tensorInfo('y', DT.FLOAT, [2])], nodes: [node('Identity', ['c'], ['y'])], initializers: [initializer('c', ElemType.FLOAT, [2], [1, 2])] });
}

function negModel(width: number): Uint8Array {
  return encodeModel({ name: `neg${width}`, inputs: [tensorInfo('x', DT.FLOAT, ['N', width])], outputs: [tensorInfo('y', DT.FLOAT, ['N', width])], nodes: [node('Neg', ['x'], ['y'])] });
}

interface Model {
  inputs: Array<{ name: string; datatype: string; shape: number[] }>;
  outputs: Array<{ name: string; datatype: string; shape: number[] }>;
  max_batch_size: number;
  default_version: string;
  versions: string[];
  versions_detail: Array<{ version: string; state: string; error?: string }>;
}

describe('models that are not the shipped ones', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  const sessions = new Map<string, ort.InferenceSession>();
  const files: Record<string, Uint8Array> = {};

  async function direct(name: string, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    let s = sessions.get(name);
    if (!s) sessions.set(name, (s = await ort.InferenceSession.create(files[name]!)));
    return s.run(feeds);
  }

  async function describeModel(name: string): Promise<Model> {
    const res = await p.api(`/v1/models/${name}`);
    expect(res.status, `GET /v1/models/${name}`).to.equal(200);
    return (await res.json()) as Model;
  }

  async function submit(body: unknown): Promise<Response> {
    return p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(body), headers: { prefer: 'wait=20' } });
  }

  before(async () => {
    Object.assign(files, {
      text: textModel(),
      fixed1: fixedBatchModel(),
      types: everyTypeModel(),
      str: stringInputModel(),
      pass: passthroughModel(),
      initin: initializerInputModel(),
      zero: zeroDimModel(),
      scalarout: scalarOutModel(),
      builtin: builtinNamesModel(),
      odd: oddNamesModel(),
      noin: noInputsModel(),
    });
    repo = tempModelRepo({
      ...Object.fromEntries(Object.entries(files).map(([n, onnx]) => [n, { onnx, config: { max_batch_size: 8, max_delay_ms: 20 } }])),
      corrupt: { onnx: new Uint8Array(Buffer.from('this is not an onnx file at all, just bytes')) },
      twover: { onnx: negModel(2) },
    });
    // twover: v2 takes x[N, 3] where v1 takes x[N, 2].
    mkdirSync(path.join(repo.root, 'twover', '2'));
    writeFileSync(path.join(repo.root, 'twover', '2', 'model.onnx'), negModel(3));
    mkdirSync(path.join(repo.root, 'corrupt', '2'));
    writeFileSync(path.join(repo.root, 'corrupt', '2', 'model.onnx'), negModel(2));
    p = await startPlatform({ models: repo.root, worker: false });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
    await Promise.allSettled([...sessions.values()].map((s) => s.release()));
  });

  it('a text model [N, seq] x2: stacked jobs of mixed lengths each get what a lone direct run gives', async () => {
    const m = await describeModel('text');
    expect({ inputs: m.inputs, outputs: m.outputs, max_batch_size: m.max_batch_size }).to.deep.equal({
      inputs: [
        { name: 'ids', datatype: 'INT64', shape: [-1] },
        { name: 'mask', datatype: 'FP32', shape: [-1] },
      ],
      outputs: [
        { name: 'scaled', datatype: 'FP32', shape: [-1] },
        { name: 'total', datatype: 'FP32', shape: [1] },
      ],
      max_batch_size: 8,
    });
    const cases = [
      { ids: [1, 2, 3], mask: [1, 0.5, 0.25] },
      { ids: [4, 5, 6], mask: [0.5, 0.5, 0.5] },
      { ids: [7, 8], mask: [1, 1] },
      { ids: [9, 10, 11], mask: [0, 1, 2] },
      { ids: [12], mask: [3] },
    ];
    const ids: string[] = [];
    for (const c of cases) ids.push((await postJob(p, { model: 'text', input: c })).job.id);
    await p.startWorker();
    for (const [i, c] of cases.entries()) {
      const job = await waitUntil(async () => {
        const j = await getJob(p, ids[i]!);
        return j.status === 'succeeded' || j.status === 'failed' ? j : null;
      }, 20_000);
      expect(job.status, JSON.stringify(job.error)).to.equal('succeeded');
      const r = await direct('text', {
        ids: new ort.Tensor('int64', BigInt64Array.from(c.ids.map(BigInt)), [1, c.ids.length]),
        mask: new ort.Tensor('float32', Float32Array.from(c.mask), [1, c.mask.length]),
      });
      expect(job.output, `case ${i}`).to.deep.equal({ scaled: Array.from(r.scaled!.data as Float32Array), total: Array.from(r.total!.data as Float32Array) });
    }
    const sizes = await Promise.all(ids.map(async (id) => (await getJob(p, id)).metrics?.batch_size));
    expect(sizes.some((s) => (s ?? 1) > 1), `some run stacked: ${sizes}`).to.equal(true);
  });

  it('a text model [N, seq] x2: a job whose ids and mask differ in length is a 422 naming "seq" (ONNX gives a name one length); in a batch, that item alone fails', async () => {
    // 3 against 2 would fail in ONNX Runtime; 3 against 1 would broadcast the mask over the ids: both refused.
    for (const [input, n] of [[{ ids: [1, 2, 3], mask: [1, 1] }, 2], [{ ids: [1, 2, 3], mask: [1] }, 1]] as const) {
      const problem = await expectProblem(await submit({ model: 'text', input }), 422, 'invalid_input');
      expect(problem.detail).to.equal(`the model names dimension "seq" in more than one place, which takes one length: input "ids" has 3 along its axis 0, input "mask" has ${n} along its axis 0`);
    }
    const items = [{ input: { ids: [1, 2], mask: [1, 1] } }, { input: { ids: [1, 2], mask: [1] } }, { input: { ids: [5], mask: [2] } }];
    for (const request of [{ json: { model: 'text', items } }, { ndjson: toNdjson(items), query: 'model=text' }]) {
      const batch = await submitBatch(p, request);
      expect((await waitForBatchEnd(p, batch.id)).request_counts).to.include({ total: 3, succeeded: 2, failed: 1 });
      const lines = await readResults(p, batch.id);
      expect(lines.map((l) => [l.status, l.error?.code ?? null]), 'json' in request ? 'JSON' : 'NDJSON').to.deep.equal([
        ['succeeded', null],
        ['failed', 'invalid_input'],
        ['succeeded', null],
      ]);
      expect(lines[1]!.error?.message).to.contain('dimension "seq"');
    }
  });

  it('a fixed batch of 1 [1,3,H,W] is not batched and shows its full shape', async () => {
    const m = await describeModel('fixed1');
    expect({ inputs: m.inputs, max_batch_size: m.max_batch_size }).to.deep.equal({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, -1, -1] }], max_batch_size: 0 });
    const x = [[[[1, -1]], [[-2, 2]], [[3, -3]]]];
    const res = await submit({ model: 'fixed1', input: { x } });
    const job = (await res.json()) as { status: string; output: unknown };
    expect(job.status).to.equal('succeeded');
    expect(job.output).to.deep.equal({ y: [[[[1, 0]], [[0, 2]], [[3, 0]]]] });
    const bad = await submit({ model: 'fixed1', input: { x: [x[0], x[0]] } });
    await expectProblem(bad, 422, 'invalid_input');
  });

  it('every datatype ONNX Runtime takes round-trips through a batched Identity, in every form', async () => {
    const m = await describeModel('types');
    expect(m.max_batch_size).to.equal(8);
    expect(m.inputs.map((s) => s.datatype)).to.deep.equal(Object.keys(TYPES));
    const values: Record<string, unknown> = {
      FP16: [1.5, -65504],
      FP64: [1e300, -2.5],
      INT8: [-128, 127],
      UINT8: [0, 255],
      INT16: [-32768, 32767],
      UINT16: [0, 65535],
      INT32: [-2147483648, 2147483647],
      UINT32: [0, 4294967295],
      INT64: [-9007199254740991, 9007199254740991],
      UINT64: [0, 9007199254740991],
      BOOL: [true, false],
    };
    const input = Object.fromEntries(Object.entries(values).map(([n, v]) => [`x_${n}`, v]));
    const asData = Object.fromEntries(Object.entries(values).map(([n, v]) => [`x_${n}`, { datatype: n, shape: [2], data: v }]));
    const [a, b] = await Promise.all([submit({ model: 'types', input }), submit({ model: 'types', input: asData })]);
    for (const res of [a, b]) {
      const job = (await res.json()) as { status: string; output: Record<string, unknown>; error: unknown };
      expect(job.status, JSON.stringify(job.error)).to.equal('succeeded');
      expect(job.output).to.deep.equal(Object.fromEntries(Object.entries(values).map(([n, v]) => [`y_${n}`, v])));
    }
  });

  it('a STRING input: described as BYTES, a job for it is a clear 422', async () => {
    const m = await describeModel('str');
    expect(m.inputs).to.deep.equal([{ name: 'x', datatype: 'BYTES', shape: [2] }]);
    await expectProblem(await submit({ model: 'str', input: { x: ['a', 'b'] } }), 422, 'invalid_input');
    await expectProblem(await submit({ model: 'str', input: { x: { datatype: 'BYTES', shape: [2], data: ['a', 'b'] } } }), 422, 'invalid_input');
  });

  it('an output that is also an input comes back as the instance given', async () => {
    const m = await describeModel('pass');
    expect(m.outputs.map((o) => o.name)).to.deep.equal(['x', 'y']);
    const res = await submit({ model: 'pass', input: { x: [1, -2] } });
    const job = (await res.json()) as { status: string; output: unknown; error: unknown };
    expect(job.status, JSON.stringify(job.error)).to.equal('succeeded');
    expect(job.output).to.deep.equal({ x: [1, -2], y: [-1, 2] });
  });

  it('an initializer among the graph inputs is not a required input; its default is used', async () => {
    const m = await describeModel('initin');
    expect(m.inputs).to.deep.equal([{ name: 'x', datatype: 'FP32', shape: [2] }]);
    const job = (await (await submit({ model: 'initin', input: { x: [10, 20] } })).json()) as { status: string; output: unknown };
    expect(job.output).to.deep.equal({ y: [11, 22] });
  });

  it('a zero-size dimension [N, 0]: jobs in each form get an empty output', async () => {
    const m = await describeModel('zero');
    expect(m.inputs).to.deep.equal([{ name: 'x', datatype: 'FP32', shape: [0] }]);
    for (const x of [[], { datatype: 'FP32', shape: [0], data: [] }, { datatype: 'FP32', shape: [0], b64: '' }]) {
      const res = await submit({ model: 'zero', input: { x } });
      const job = (await res.json()) as { status: string; output: unknown; error: unknown };
      expect(job.status, `${JSON.stringify(x)}: ${JSON.stringify(job)}`).to.equal('succeeded');
      expect(job.output).to.deep.equal({ y: [] });
    }
  });

  it('a scalar output makes the model unbatched, with its full shapes; it runs', async () => {
    const m = await describeModel('scalarout');
    expect({ inputs: m.inputs, outputs: m.outputs, max_batch_size: m.max_batch_size }).to.deep.equal({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 's', datatype: 'FP32', shape: [] }],
      max_batch_size: 0,
    });
    const job = (await (await submit({ model: 'scalarout', input: { x: [[1, 2], [3, 4]] } })).json()) as { status: string; output: unknown };
    expect(job.output).to.deep.equal({ s: 10 });
  });

  it('inputs named after Object.prototype methods (toString) must be given; outputs named hasOwnProperty come back', async () => {
    await expectProblem(await submit({ model: 'builtin', input: {} }), 422, 'invalid_input');
    const res = await submit({ model: 'builtin', input: { toString: [1, -2] } });
    const text = await res.text();
    expect(text).to.include('"status":"succeeded"');
    expect(text).to.include('"output":{"hasOwnProperty":[-1,2]}');
  });

  it('very long and odd input/output names are described and served as they are', async () => {
    const m = await describeModel('odd');
    expect(m.inputs[0]!.name).to.equal(LONG);
    expect(m.outputs[0]!.name).to.equal(ODD);
    const job = (await (await submit({ model: 'odd', input: { [LONG]: [1, 2] } })).json()) as { status: string; output: unknown; error: unknown };
    expect(job.status, JSON.stringify(job.error)).to.equal('succeeded');
    expect(job.output).to.deep.equal({ [ODD]: [-1, -2] });
  });

  it('a model with no inputs runs with input {}', async () => {
    const m = await describeModel('noin');
    expect(m.inputs).to.deep.equal([]);
    const res = await submit({ model: 'noin', input: {} });
    const text = await res.text();
    expect(res.status, text).to.equal(200);
    expect(JSON.parse(text).output).to.deep.equal({ y: [1, 2] });
  });

  it('a corrupt version beside a good one: failed with its reason, the good one serves', async () => {
    const m = await describeModel('corrupt');
    expect(m.versions).to.deep.equal(['2']);
    const v1 = m.versions_detail.find((d) => d.version === '1');
    expect(v1?.state).to.equal('failed');
    expect(v1?.error).to.be.a('string').and.not.include(repo.root);
    await expectProblem(await submit({ model: 'corrupt', version: '1', input: { x: [1, 2] } }), 404, 'version_not_found');
    const job = (await (await submit({ model: 'corrupt', input: { x: [1, 2] } })).json()) as { status: string; output: unknown };
    expect(job.output).to.deep.equal({ y: [-1, -2] });
  });

  it('two versions with different input specs: each validated and run against its own', async () => {
    const m = await describeModel('twover');
    expect(m.default_version).to.equal('2');
    expect(m.inputs).to.deep.equal([{ name: 'x', datatype: 'FP32', shape: [3] }]);
    const v1 = (await (await submit({ model: 'twover', version: '1', input: { x: [1, 2] } })).json()) as { status: string; output: unknown };
    expect(v1.output).to.deep.equal({ y: [-1, -2] });
    const v2 = (await (await submit({ model: 'twover', input: { x: [1, 2, 3] } })).json()) as { status: string; output: unknown };
    expect(v2.output).to.deep.equal({ y: [-1, -2, -3] });
    await expectProblem(await submit({ model: 'twover', version: '1', input: { x: [1, 2, 3] } }), 422, 'invalid_input');
    await expectProblem(await submit({ model: 'twover', input: { x: [1, 2] } }), 422, 'invalid_input');
  });

  it('the worker is still alive and serving after all of the above', async () => {
    const job = (await (await submit({ model: 'twover', input: { x: [4, 5, 6] } })).json()) as { status: string; output: unknown };
    expect(job.output).to.deep.equal({ y: [-4, -5, -6] });
  });
});
