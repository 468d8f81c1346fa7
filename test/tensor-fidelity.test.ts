import { expect } from 'chai';
import { gzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import type { BatchResultLine, Datatype } from '@infer/contract';
import { ElemType, encodeModel, initializer, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { getJob, postJob, runJob } from './helpers/jobs.js';
import { readResults, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Tensor fidelity end to end, on paths and values no other test covers:
 * every datatype through an Identity model in every form and on every path,
 * integer ranges, the b64 spellings on the plain, lifted and scanner paths,
 * variable output shapes in the results file (across chunks), and bisection
 * among instances of several shapes.
 */

/** TensorProto.DataType numbers of the types onnx-builder's ElemType leaves out. */
const PROTO = { FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13 } as const;
type Dt = Exclude<Datatype, 'BYTES'>;
const TYPES: Array<[Dt, number]> = [
  ['FP32', PROTO.FLOAT],
  ['FP64', PROTO.DOUBLE],
  ['FP16', PROTO.FLOAT16],
  ['INT8', PROTO.INT8],
  ['UINT8', PROTO.UINT8],
  ['INT16', PROTO.INT16],
  ['UINT16', PROTO.UINT16],
  ['INT32', PROTO.INT32],
  ['UINT32', PROTO.UINT32],
  ['INT64', PROTO.INT64],
  ['UINT64', PROTO.UINT64],
  ['BOOL', PROTO.BOOL],
];

/** Batched: out_<DT>[N,3] = in_<DT>[N,3] for every datatype. */
function identityAllTypes(): Uint8Array {
  return encodeModel({
    name: 'identity_all',
    inputs: TYPES.map(([dt, t]) => valueInfo(`in_${dt}`, t as ElemType, ['batch', 3])),
    outputs: TYPES.map(([dt, t]) => valueInfo(`out_${dt}`, t as ElemType, ['batch', 3])),
    nodes: TYPES.map(([dt]) => node('Identity', [`in_${dt}`], [`out_${dt}`])),
  });
}

/** Batched, variable length: y[N,L] = x[N,L]. */
function identityVar(): Uint8Array {
  return encodeModel({
    name: 'identity_var',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', 'len'])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', 'len'])],
    nodes: [node('Identity', ['x'], ['y'])],
  });
}

/** Batched, fixed and wide (its b64 is long enough to be lifted from a job's body): y[N,301] = x[N,301]. */
function identityWide(): Uint8Array {
  return encodeModel({
    name: 'identity_wide',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', 301])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', 301])],
    nodes: [node('Identity', ['x'], ['y'])],
  });
}

/** Batched, two variable-length inputs and a poison: vector[N,3] = sum of table rows ids[N,L] (ids past 9 make ONNX Runtime throw), wsum[N] = sum of w[N,K]. */
function embedVar(): Uint8Array {
  const table = Array.from({ length: 10 }, (_, i) => [i, 2 * i, -i]).flat();
  return encodeModel({
    name: 'embed_var',
    inputs: [valueInfo('ids', ElemType.INT64, ['batch', 'len']), valueInfo('w', ElemType.FLOAT, ['batch', 'k'])],
    outputs: [valueInfo('vector', ElemType.FLOAT, ['batch', 3]), valueInfo('wsum', ElemType.FLOAT, ['batch'])],
    initializers: [initializer('table', ElemType.FLOAT, [10, 3], table), initializer('axes', ElemType.INT64, [1], [1])],
    nodes: [
      node('Gather', ['table', 'ids'], ['rows'], { axis: 0 }),
      node('ReduceSum', ['rows', 'axes'], ['vector'], { keepdims: 0 }),
      node('ReduceSum', ['w', 'axes'], ['wsum'], { keepdims: 0 }),
    ],
  });
}

const TYPED: Record<Dt, new (n: number) => ArrayLike<number | bigint> & { buffer: ArrayBufferLike; [i: number]: number | bigint }> = {
  FP32: Float32Array,
  FP64: Float64Array,
  FP16: Uint16Array,
  INT8: Int8Array,
  UINT8: Uint8Array,
  INT16: Int16Array,
  UINT16: Uint16Array,
  INT32: Int32Array,
  UINT32: Uint32Array,
  INT64: BigInt64Array,
  UINT64: BigUint64Array,
  BOOL: Uint8Array,
};

/** Edge values of each datatype, as JSON gives them (FP16: the numbers its bit patterns hold). */
const EDGES: Record<Dt, Array<number | boolean>> = {
  FP32: [-0, 1.401298464324817e-45, 3.4028234663852886e38],
  FP64: [5e-324, -1.7976931348623157e308, 2.2250738585072014e-308],
  FP16: [-0, 5.960464477539063e-8, 65504],
  INT8: [-128, 127, -1],
  UINT8: [0, 255, 128],
  INT16: [-32768, 32767, -1],
  UINT16: [0, 65535, 32768],
  INT32: [-2147483648, 2147483647, -1],
  UINT32: [0, 4294967295, 2147483648],
  INT64: [-9007199254740991, 9007199254740991, 2147483648],
  UINT64: [0, 9007199254740991, 4294967296],
  BOOL: [true, false, true],
};
const FP16_BITS = [0x8000, 0x0001, 0x7bff];

function b64Of(dt: Dt, values: Array<number | boolean>): string {
  const out = new TYPED[dt](values.length);
  values.forEach((v, i) => {
    if (dt === 'FP16') out[i] = FP16_BITS[i]!;
    else if (dt === 'INT64' || dt === 'UINT64') out[i] = BigInt(v as number);
    else out[i] = typeof v === 'boolean' ? (v ? 1 : 0) : v;
  });
  return Buffer.from(out.buffer).toString('base64');
}

/** One instance of every input, each in `form` (FP16: b64 whatever the form, the only one it takes). */
function allTypesInput(form: 'nested' | 'data' | 'b64'): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const [dt] of TYPES) {
    const values = EDGES[dt];
    if (form === 'b64' || dt === 'FP16') input[`in_${dt}`] = { datatype: dt, shape: [3], b64: b64Of(dt, values) };
    else if (form === 'data') input[`in_${dt}`] = { datatype: dt, shape: [3], data: values };
    else input[`in_${dt}`] = values;
  }
  return input;
}

/** The output every path must give: each input back, as JSON prints it. */
const ALL_TYPES_OUTPUT = JSON.parse(JSON.stringify(Object.fromEntries(TYPES.map(([dt]) => [`out_${dt}`, EDGES[dt]])))) as Record<string, unknown>;

const INT_LIMITS: Array<[Dt, number, number]> = [
  ['INT8', -128, 127],
  ['UINT8', 0, 255],
  ['INT16', -32768, 32767],
  ['UINT16', 0, 65535],
  ['INT32', -2147483648, 2147483647],
  ['UINT32', 0, 4294967295],
  ['INT64', -9007199254740991, 9007199254740991],
  ['UINT64', 0, 9007199254740991],
];

describe('tensors: fidelity on every path', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;

  before(async () => {
    repo = tempModelRepo({
      all: { onnx: identityAllTypes(), config: { max_batch_size: 8, max_delay_ms: 2 } },
      vec: { onnx: identityVar(), config: { max_batch_size: 16, max_delay_ms: 2 } },
      wide: { onnx: identityWide(), config: { max_batch_size: 16, max_delay_ms: 2 } },
    });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  const ndjsonBatch = async (model: string, items: unknown[], gzip = false): Promise<BatchResultLine[]> => {
    const text = items.map((i) => (typeof i === 'string' ? i : JSON.stringify(i))).join('\n') + '\n';
    const headers: Record<string, string> = { 'content-type': 'application/x-ndjson' };
    if (gzip) headers['content-encoding'] = 'gzip';
    const res = await p.api(`/v1/batches?model=${model}`, { method: 'POST', headers, body: gzip ? gzipSync(text) : text });
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    await waitForBatchEnd(p, id, 60_000);
    return readResults(p, id);
  };
  const jsonBatch = async (model: string, items: unknown[]): Promise<BatchResultLine[]> => {
    const batch = await submitBatch(p, { json: { model, items } });
    await waitForBatchEnd(p, batch.id, 60_000);
    return readResults(p, batch.id);
  };

  it('every datatype: edge values come back exactly, in each form, by Prefer: wait, by polling, and in JSON, NDJSON and gzip NDJSON batches', async () => {
    const forms = ['nested', 'data', 'b64'] as const;
    for (const form of forms) {
      const input = allTypesInput(form);
      const waited = await runJob(p, { model: 'all', input });
      expect(waited.status, `${form}: ${JSON.stringify(waited.error)}`).to.equal('succeeded');
      expect(waited.output, `${form} Prefer: wait`).to.deep.equal(ALL_TYPES_OUTPUT);
      const { job } = await postJob(p, { model: 'all', input });
      const polled = await waitUntil(async () => {
        const j = await getJob(p, job.id);
        return j.status === 'succeeded' || j.status === 'failed' ? j : null;
      }, 20_000, 'the polled job to end');
      expect(polled.output, `${form} polled`).to.deep.equal(ALL_TYPES_OUTPUT);
    }
    const items = forms.map((form) => ({ custom_id: form, input: allTypesInput(form) }));
    for (const [path, lines] of [
      ['json', await jsonBatch('all', items)],
      ['ndjson', await ndjsonBatch('all', items)],
      ['gzip ndjson', await ndjsonBatch('all', items, true)],
    ] as const) {
      expect(lines.map((l) => l.custom_id)).to.deep.equal([...forms]);
      for (const line of lines) {
        expect(line.status, `${path} ${line.custom_id}: ${JSON.stringify(line.error)}`).to.equal('succeeded');
        expect(line.output, `${path} ${line.custom_id}`).to.deep.equal(ALL_TYPES_OUTPUT);
      }
    }
  });

  it('integers one past their range, or fractional, are refused alike by POST /v1/jobs and both batch forms; 64-bit b64 past 2^53 is taken', async () => {
    const base = allTypesInput('nested');
    const bad: Array<{ name: string; input: Record<string, unknown> }> = [];
    for (const [dt, lo, hi] of INT_LIMITS) {
      const outside = dt === 'INT64' ? [lo - 1, hi + 1] : dt === 'UINT64' ? [-1, hi + 1] : [lo - 1, hi + 1];
      for (const v of [...outside, 0.5]) {
        for (const form of ['nested', 'data'] as const) {
          const values = [v, 0, 0];
          bad.push({ name: `${dt} ${v} ${form}`, input: { ...base, [`in_${dt}`]: form === 'nested' ? values : { datatype: dt, shape: [3], data: values } } });
        }
      }
    }
    for (const b of bad) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'all', input: b.input }) });
      expect(res.status, b.name).to.equal(422);
    }
    const items = bad.map((b) => ({ custom_id: b.name, input: b.input }));
    for (const lines of [await jsonBatch('all', items), await ndjsonBatch('all', items)]) {
      expect(lines).to.have.length(bad.length);
      for (const line of lines) {
        expect(line.status, line.custom_id!).to.equal('failed');
        expect(line.error!.code, line.custom_id!).to.equal('invalid_input');
      }
    }
    // The b64 form of INT64 and UINT64 carries every value (docs/api.md limits only the JSON forms to 2^53 − 1).
    const big = new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n]);
    const ubig = new BigUint64Array([2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n]);
    const input = {
      ...base,
      in_INT64: { datatype: 'INT64', shape: [3], b64: Buffer.from(big.buffer).toString('base64') },
      in_UINT64: { datatype: 'UINT64', shape: [3], b64: Buffer.from(ubig.buffer).toString('base64') },
    };
    const job = await runJob(p, { model: 'all', input });
    expect(job.status).to.equal('succeeded');
    // "64-bit integers become JSON numbers": the nearest double.
    expect(job.output!.out_INT64).to.deep.equal(Array.from(big, Number));
    expect(job.output!.out_UINT64).to.deep.equal(Array.from(ubig, Number));
  });

  it('b64 spellings: refused alike (short and lifted job bodies, JSON batch, NDJSON on the scanner and the general path); a JSON escape inside the text is taken alike', async () => {
    // Bytes ff ff ff bf (a float32 near -2) give "////vw==": the text has '/' to turn URL-safe, and padding to drop.
    const special = new Float32Array(new Uint32Array([0xbfffffff, 0x3e7bfbef, 0xfbefbeff]).buffer);
    // 4 and 301 elements: byte counts that are not multiples of 3, so the text ends in padding.
    const short = new Float32Array(4);
    const long = new Float32Array(301);
    for (const x of [short, long]) for (let i = 0; i < x.length; i++) x[i] = special[i % 3]!;
    const good = (x: Float32Array) => Buffer.from(x.buffer).toString('base64');
    const variants = (x: Float32Array): Array<[string, string, boolean]> => {
      const g = good(x);
      expect(g).to.match(/\//).and.to.match(/\+/).and.to.match(/=$/);
      return [
        ['url-safe', g.replace(/\//g, '_').replace(/\+/g, '-'), false],
        ['unpadded', g.replace(/=+$/, ''), false],
        ['space inside', `${g.slice(0, 8)} ${g.slice(8, -4)}${g.slice(-3)}`, false],
        ['trailing newline', `${g}\n`, false],
        ['one element short', Buffer.from(x.buffer, 0, x.byteLength - 4).toString('base64'), false],
        ['one element long', Buffer.concat([Buffer.from(x.buffer), Buffer.alloc(4)]).toString('base64'), false],
        ['padding inside', `${g.slice(0, 4)}====${g.slice(8)}`, false],
      ];
    };
    const expected = (x: Float32Array) => JSON.parse(JSON.stringify(Array.from(x))) as number[];
    for (const [model, x] of [['vec', short], ['wide', long]] as const) {
      const cases = variants(x);
      // The JSON text of the job body, written by hand so an escape survives: "\/" is "/" to JSON.parse.
      const body = (b64json: string) => `{"model":"${model}","input":{"x":{"datatype":"FP32","shape":[${x.length}],"b64":${b64json}}}}`;
      for (const [name, text] of cases) {
        const res = await p.api('/v1/jobs', { method: 'POST', body: body(JSON.stringify(text)) });
        expect(res.status, `${model} job ${name}`).to.equal(422);
      }
      const escaped = JSON.stringify(good(x)).replace(/\//g, '\\/');
      const ok = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: body(escaped) });
      const okJob = (await ok.json()) as { status: string; output: { y: number[] } };
      expect(okJob.status, `${model} escaped "\\/"`).to.equal('succeeded');
      expect(okJob.output.y).to.deep.equal(expected(x));

      const items = cases.map(([name, text]) => ({ custom_id: name, input: { x: { datatype: 'FP32', shape: [x.length], b64: text } } }));
      const lineOf = (name: string, b64json: string) => `{"custom_id":"${name}","input":{"x":{"datatype":"FP32","shape":[${x.length}],"b64":${b64json}}}}`;
      const ndLines = [...cases.map(([name, text]) => lineOf(name, JSON.stringify(text))), lineOf('escaped', escaped)];
      for (const [path, lines] of [
        ['json', await jsonBatch(model, [...items, { custom_id: 'escaped', input: { x: { datatype: 'FP32', shape: [x.length], b64: good(x) } } }])],
        ['ndjson', await ndjsonBatch(model, ndLines)],
      ] as const) {
        for (const line of lines) {
          if (line.custom_id === 'escaped') {
            expect(line.status, `${model} ${path} escaped`).to.equal('succeeded');
            expect(line.output).to.deep.equal({ y: expected(x) });
          } else {
            expect(line.status, `${model} ${path} ${line.custom_id}`).to.equal('failed');
            expect(line.error!.code).to.equal('invalid_input');
          }
        }
      }
    }
  });

  it('variable output shapes in the results file, over two chunks, equal the job API and the input (0-length rows included)', async () => {
    const rows = 2100; // past one chunk's 2048 rows
    const lengthOf = (i: number) => (i * 7) % 5;
    const valuesOf = (i: number) => Array.from({ length: lengthOf(i) }, (_, k) => Math.fround((i - k) / 3) * (k % 2 ? -1 : 1));
    const items = Array.from({ length: rows }, (_, i) => ({
      custom_id: `r${i}`,
      input: { x: i % 2 ? valuesOf(i) : { datatype: 'FP32', shape: [lengthOf(i)], b64: Buffer.from(Float32Array.from(valuesOf(i)).buffer).toString('base64') } },
    }));
    const lines = await ndjsonBatch('vec', items, true);
    expect(lines).to.have.length(rows);
    for (const [i, line] of lines.entries()) {
      expect(line.index).to.equal(i);
      expect(line.custom_id).to.equal(`r${i}`);
      expect(line.status, `${i}: ${JSON.stringify(line.error)}`).to.equal('succeeded');
      expect(line.output, `row ${i}`).to.deep.equal({ y: JSON.parse(JSON.stringify(valuesOf(i))) });
    }
    for (const i of [0, 1, 2, 2047, 2048, 2099]) {
      const job = await runJob(p, { model: 'vec', input: items[i]!.input });
      expect(job.output, `job ${i}`).to.deep.equal(lines[i]!.output);
    }
  });
});

describe('tensors: bisection among instances of several shapes', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let session: ort.InferenceSession;
  const cases: Array<{ ids: number[]; w: number[] }> = Array.from({ length: 24 }, (_, i) => ({
    ids: Array.from({ length: i % 4 }, (_, j) => (j === 0 && (i === 9 || i === 21) ? 11 : (i + j) % 10)),
    w: Array.from({ length: (i * 5) % 3 }, (_, j) => Math.fround(0.1 * (i + j))),
  }));

  before(async () => {
    const onnx = embedVar();
    repo = tempModelRepo({ ev: { onnx, config: { max_batch_size: 32, max_delay_ms: 2 } } });
    // No worker at first: the jobs queue, and the first take stacks them all.
    p = await startPlatform({ models: repo.root, worker: false });
    session = await ort.InferenceSession.create(onnx);
  });
  after(async () => {
    await session?.release();
    await p?.close();
    repo?.remove();
  });

  /** ONNX Runtime on the instance alone, as the API prints it; null when it throws. */
  const alone = async (c: { ids: number[]; w: number[] }) => {
    try {
      const r = await session.run({
        ids: new ort.Tensor('int64', BigInt64Array.from(c.ids, BigInt), [1, c.ids.length]),
        w: new ort.Tensor('float32', Float32Array.from(c.w), [1, c.w.length]),
      });
      return JSON.parse(JSON.stringify({ vector: Array.from(r.vector!.data as Float32Array), wsum: (r.wsum!.data as Float32Array)[0] })) as unknown;
    } catch {
      return null;
    }
  };

  it('jobs of twelve shape pairs stacked together: the two poison jobs fail alone, every other job gets its own output', async () => {
    const ids: string[] = [];
    for (const c of cases) ids.push((await postJob(p, { model: 'ev', input: c })).job.id);
    await p.startWorker();
    for (const [i, id] of ids.entries()) {
      const res = await p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=20' } });
      const job = (await res.json()) as { status: string; output: unknown; error: { code: string } | null };
      const want = await alone(cases[i]!);
      if (want === null) {
        expect(job.status, `job ${i}`).to.equal('failed');
        expect(job.error!.code).to.equal('inference_failed');
      } else {
        expect(job.status, `job ${i}: ${JSON.stringify(job.error)}`).to.equal('succeeded');
        expect(job.output, `job ${i}`).to.deep.equal(want);
      }
    }
  });

  it('the same rows as a batch: the poison lines fail with their line, every other line equals ONNX Runtime alone', async () => {
    await p.startWorker();
    const batch = await submitBatch(p, { ndjson: cases.map((c, i) => JSON.stringify({ custom_id: `c${i}`, input: c })).join('\n'), query: 'model=ev' });
    await waitForBatchEnd(p, batch.id, 60_000);
    const lines = await readResults(p, batch.id);
    for (const [i, line] of lines.entries()) {
      const want = await alone(cases[i]!);
      if (want === null) {
        expect(line.status, `line ${i + 1}`).to.equal('failed');
        expect(line.error!.code).to.equal('inference_failed');
      } else {
        expect(line.status, `line ${i + 1}: ${JSON.stringify(line.error)}`).to.equal('succeeded');
        expect(line.output, `line ${i + 1}`).to.deep.equal(want);
      }
    }
  });
});
