import { BYTES_PER_ELEMENT, type BulkChunkPayload, type Datatype, type JobError } from '@infer/contract';
import { failedLine, succeededLine } from '@infer/batch-store';
import { runModel, type ModelVersion } from '@infer/models';
import {
  allocate,
  elementCount,
  formatShape,
  fromBytes,
  shapeMatches,
  type DecodedTensor,
  type TensorData,
} from '@infer/tensors';

/**
 * Running one chunk of a batch: decode its packed inputs, run them through
 * the model in slices of at most `max_batch_size` rows, and render one
 * result line per item, in submission order.
 *
 * A fixed-shape input arrives as one contiguous little-endian buffer of all
 * the chunk's valid rows, so it is viewed as a [rows, ...shape] tensor and a
 * slice is a `subarray` of it: no per-row work before ONNX Runtime. Inputs
 * with variable dimensions carry each row's shape; rows are grouped by shape
 * (API.md: never stack differing shapes) and each slice is stacked.
 */

/** One input of a decoded chunk: its rows share one shape, or each has its own. */
type ChunkInput = FixedInput | VariableInput;

interface FixedInput {
  kind: 'fixed';
  datatype: Exclude<Datatype, 'BYTES'>;
  data: TensorData;
  /** Every row's shape; row r is elements [r * per, (r + 1) * per) of `data`. */
  shape: number[];
  per: number;
}

interface VariableInput {
  kind: 'variable';
  datatype: Exclude<Datatype, 'BYTES'>;
  data: TensorData;
  /** Each valid row's shape. */
  shapes: number[][];
  /** Element offset of each row in `data`. */
  offsets: number[];
}

const rowShape = (input: ChunkInput, r: number): number[] => (input.kind === 'fixed' ? input.shape : input.shapes[r]!);
const rowOffset = (input: ChunkInput, r: number): number => (input.kind === 'fixed' ? r * input.per : input.offsets[r]!);

export interface DecodedChunk {
  inputs: Map<string, ChunkInput>;
  /** Offset in the chunk of each valid row, ascending. */
  rowOffsets: number[];
  /** Item offset → the error it failed validation with at upload. */
  failures: Map<number, JobError>;
}

/** A chunk whose payload does not fit the model: never retried, its rows fail. */
export class MalformedChunkError extends Error {
  override name = 'MalformedChunkError';
}

/**
 * Check a chunk against the model again (never trust the queue) and view its
 * packed input bytes (BatchStore.chunkInputs) as typed arrays. Throws
 * MalformedChunkError.
 */
export function decodeChunk(model: ModelVersion, p: BulkChunkPayload, packed: Buffer): DecodedChunk {
  const bad = (why: string) => new MalformedChunkError(`malformed chunk payload: ${why}`);
  if (p.custom_ids.length !== p.count) throw bad('custom_ids does not list every item');
  const failures = new Map<number, JobError>();
  for (const f of p.failures) {
    if (f.offset >= p.count || failures.has(f.offset)) throw bad('a failure offset is out of range or repeated');
    failures.set(f.offset, f.error);
  }
  if (p.rows !== p.count - failures.size) throw bad(`rows is ${p.rows}, expected ${p.count - failures.size}`);
  const rowOffsets: number[] = [];
  for (let k = 0; k < p.count; k++) if (!failures.has(k)) rowOffsets.push(k);

  const known = new Set(model.inputs.map((s) => s.name));
  for (const name of Object.keys(p.inputs)) if (!known.has(name)) throw bad(`unknown input "${name}"`);
  const inputs = new Map<string, ChunkInput>();
  for (const spec of model.inputs) {
    const enc = p.inputs[spec.name];
    if (!enc) throw bad(`missing input "${spec.name}"`);
    if (enc.datatype !== spec.datatype || enc.datatype === 'BYTES') throw bad(`input "${spec.name}" is ${enc.datatype}, the model takes ${spec.datatype}`);
    const datatype = enc.datatype;
    /** The input's bytes as a typed array, once they are known to hold `elements`. */
    const view = (elements: number): TensorData => {
      if (enc.offset + enc.bytes > packed.byteLength) throw bad(`input "${spec.name}" lies past the end of the chunk's ${packed.byteLength} packed bytes`);
      const bytes = packed.subarray(enc.offset, enc.offset + enc.bytes);
      if (bytes.byteLength !== elements * BYTES_PER_ELEMENT[datatype]) {
        throw bad(`input "${spec.name}" holds ${bytes.byteLength} bytes, its rows need ${elements * BYTES_PER_ELEMENT[datatype]}`);
      }
      return fromBytes(datatype, bytes);
    };
    if (enc.shape) {
      // One shape for all rows: a row is found by arithmetic, nothing is listed per row.
      if (!shapeMatches(enc.shape, spec.shape)) throw bad(`input "${spec.name}" shape ${formatShape(enc.shape)} does not fit ${formatShape(spec.shape)}`);
      const per = elementCount(enc.shape);
      inputs.set(spec.name, { kind: 'fixed', datatype, data: view(per * p.rows), shape: enc.shape, per });
    } else if (enc.shapes && enc.shapes.length === p.rows) {
      const shapes = enc.shapes;
      for (const s of shapes) if (!shapeMatches(s, spec.shape)) throw bad(`input "${spec.name}" row shape ${formatShape(s)} does not fit ${formatShape(spec.shape)}`);
      const offsets = new Array<number>(p.rows);
      let elements = 0;
      for (let r = 0; r < p.rows; r++) {
        offsets[r] = elements;
        elements += elementCount(shapes[r]!);
      }
      inputs.set(spec.name, { kind: 'variable', datatype, data: view(elements), shapes, offsets });
    } else {
      throw bad(`input "${spec.name}" gives neither a shape nor one shape per row`);
    }
  }
  return { inputs, rowOffsets, failures };
}

export interface RunChunkHooks {
  /**
   * Called before each slice: yield to interactive work, look for a cancel.
   * False (or a promise of false) stops the chunk (its batch has ended). A
   * plain boolean is not awaited, so a slice with nothing to wait for costs
   * no trip through the microtask queue.
   */
  beforeSlice(): boolean | Promise<boolean>;
}

export interface ChunkResult {
  /** One line per item, in order; empty when `stopped`. */
  ndjson: string;
  succeeded: number;
  /** Items that failed while running (those invalid at upload are not counted here). */
  failed: number;
  stopped: boolean;
  /** Each ONNX Runtime run: rows and milliseconds, for metrics. */
  runs: { size: number; ms: number }[];
}

/** Run every valid row of a decoded chunk and render all of its items' lines. */
export async function runChunk(model: ModelVersion, p: BulkChunkPayload, chunk: DecodedChunk, hooks: RunChunkHooks): Promise<ChunkResult> {
  const lines = new Array<string>(p.count);
  for (const [offset, error] of chunk.failures) lines[offset] = failedLine(p.start + offset, p.custom_ids[offset] ?? null, error);
  const result: ChunkResult = { ndjson: '', succeeded: 0, failed: 0, stopped: false, runs: [] };
  const inputs = model.inputs.map((spec) => [spec.name, chunk.inputs.get(spec.name)!] as const);

  for (const slice of slices(model, inputs.map(([, i]) => i), p.rows)) {
    const go = hooks.beforeSlice();
    if (!(typeof go === 'boolean' ? go : await go)) {
      result.stopped = true;
      return result;
    }
    const feeds: Record<string, DecodedTensor> = {};
    for (const [name, input] of inputs) feeds[name] = sliceFeed(model, input, slice);
    try {
      const { outputs, inferenceMs } = await runModel(model, feeds);
      result.runs.push({ size: slice.count, ms: inferenceMs });
      const outputJson = outputMapJson(model, outputs);
      for (let k = 0; k < slice.count; k++) {
        const offset = chunk.rowOffsets[rowAt(slice, k)]!;
        lines[offset] = succeededLine(p.start + offset, p.custom_ids[offset] ?? null, outputJson(k));
      }
      result.succeeded += slice.count;
    } catch (err) {
      const error: JobError = { code: 'inference_failed', message: `ONNX Runtime failed: ${(err as Error).message}` };
      for (let k = 0; k < slice.count; k++) {
        const offset = chunk.rowOffsets[rowAt(slice, k)]!;
        lines[offset] = failedLine(p.start + offset, p.custom_ids[offset] ?? null, error);
      }
      result.failed += slice.count;
    }
  }
  result.ndjson = lines.join('');
  return result;
}

/** The lines of a chunk whose rows cannot run at all (a malformed payload, a chunk that kept killing workers). */
export function failChunkLines(p: BulkChunkPayload, error: JobError): { ndjson: string; failed: number } {
  const invalid = new Map(p.failures.map((f) => [f.offset, f.error]));
  let ndjson = '';
  for (let k = 0; k < p.count; k++) ndjson += failedLine(p.start + k, p.custom_ids[k] ?? null, invalid.get(k) ?? error);
  return { ndjson, failed: p.count - invalid.size };
}

/**
 * The valid rows of one run: `count` rows from `first` on, or, when rows are
 * grouped by shape, the ones listed in `rows`.
 */
interface Slice {
  first: number;
  count: number;
  rows: readonly number[] | null;
}

const rowAt = (slice: Slice, k: number): number => (slice.rows ? slice.rows[k]! : slice.first + k);

/**
 * The runs of a chunk, in order. A model that is not batched runs one row at
 * a time; otherwise rows of one shape, in arrival order, at most
 * `max_batch_size` a run. When every input has one shape, runs are plain
 * ranges of rows.
 */
function slices(model: ModelVersion, inputs: readonly ChunkInput[], rows: number): Slice[] {
  const size = model.batched ? Math.max(1, model.maxBatchSize) : 1;
  const out: Slice[] = [];
  if (inputs.every((i) => i.kind === 'fixed')) {
    for (let r = 0; r < rows; r += size) out.push({ first: r, count: Math.min(size, rows - r), rows: null });
    return out;
  }
  const byShape = new Map<string, number[]>();
  for (let r = 0; r < rows; r++) {
    const key = inputs.map((i) => rowShape(i, r).join('x')).join('|');
    let g = byShape.get(key);
    if (!g) byShape.set(key, (g = []));
    g.push(r);
  }
  for (const g of byShape.values()) {
    for (let i = 0; i < g.length; i += size) {
      const part = g.slice(i, i + size);
      out.push({ first: part[0]!, count: part.length, rows: part });
    }
  }
  return out;
}

/** One input's tensor for a run: a view of the chunk when its rows are contiguous, else a stacked copy. */
function sliceFeed(model: ModelVersion, input: ChunkInput, slice: Slice): DecodedTensor {
  const first = slice.first;
  const shape = rowShape(input, first);
  const per = elementCount(shape);
  if (!model.batched) {
    const from = rowOffset(input, first);
    return { datatype: input.datatype, shape, data: input.data.subarray(from, from + per) };
  }
  const last = rowAt(slice, slice.count - 1);
  if (input.kind === 'fixed' && last - first === slice.count - 1) {
    const from = rowOffset(input, first);
    return { datatype: input.datatype, shape: [slice.count, ...shape], data: input.data.subarray(from, from + per * slice.count) };
  }
  const out = allocate(input.datatype, per * slice.count);
  for (let k = 0; k < slice.count; k++) {
    const from = rowOffset(input, rowAt(slice, k));
    (out as Float32Array).set(input.data.subarray(from, from + per) as Float32Array, k * per);
  }
  return { datatype: input.datatype, shape: [slice.count, ...shape], data: out };
}

/**
 * Row k of a run's outputs as the JSON of its output map, `{"name":value,…}`,
 * in the model's output order. Each output's renderer is chosen once per
 * run, not per row.
 */
function outputMapJson(model: ModelVersion, outputs: Record<string, DecodedTensor>): (k: number) => string {
  const parts = model.outputs.map((spec, j) => {
    const prefix = (j ? ',' : '{') + JSON.stringify(spec.name) + ':';
    return { prefix, json: rowJson(outputs[spec.name]!, model.batched) };
  });
  if (parts.length === 1) {
    const { prefix, json } = parts[0]!;
    return (k) => prefix + json(k) + '}';
  }
  return (k) => {
    let s = '';
    for (const { prefix, json } of parts) s += prefix + json(k);
    return s + '}';
  };
}

/** Row k of one output tensor (the whole tensor when the model is not batched) as JSON. */
function rowJson(t: DecodedTensor, batched: boolean): (k: number) => string {
  const shape = batched ? t.shape.slice(1) : t.shape;
  const per = elementCount(shape);
  const stride = batched ? per : 0;
  const data = t.data;
  if (shape.length === 1 && t.datatype !== 'BOOL' && isNumberArray(data)) return numberListJson(data, per, stride);
  const bool = t.datatype === 'BOOL';
  return (k) => nestedJson(data, shape, bool, k * stride);
}

type NumberArray = Exclude<TensorData, BigInt64Array | BigUint64Array>;

const isNumberArray = (data: TensorData): data is NumberArray => !(data instanceof BigInt64Array || data instanceof BigUint64Array);

/**
 * The usual row, a list of numbers: copied into one reused array and handed
 * to JSON.stringify, which prints numbers straight into its output (as JS
 * prints them, non-finite ones as null) instead of making a string of each:
 * about 30% less CPU a row than concatenating them.
 */
function numberListJson(data: NumberArray, per: number, stride: number): (k: number) => string {
  const row = new Array<number>(per).fill(0);
  return (k) => {
    const from = k * stride;
    for (let i = 0; i < per; i++) row[i] = data[from + i]!;
    return JSON.stringify(row);
  };
}

/**
 * `JSON.stringify(toNested(data, shape, bool, offset))`, without building the
 * arrays: the same text (numbers print as JSON prints them; a non-finite one
 * as null), at a fraction of the cost, for every row of a batch.
 */
export function nestedJson(data: TensorData, shape: readonly number[], bool: boolean, offset = 0): string {
  return nestedJsonAt(data, shape, bool, 0, { i: offset });
}

function nestedJsonAt(data: TensorData, shape: readonly number[], bool: boolean, depth: number, at: { i: number }): string {
  if (depth === shape.length) return leafJson(data[at.i++]!, bool);
  const n = shape[depth]!;
  let s = '[';
  if (depth === shape.length - 1) {
    for (let k = 0; k < n; k++) s += (k ? ',' : '') + leafJson(data[at.i++]!, bool);
  } else {
    for (let k = 0; k < n; k++) s += (k ? ',' : '') + nestedJsonAt(data, shape, bool, depth + 1, at);
  }
  return s + ']';
}

function leafJson(v: number | bigint, bool: boolean): string {
  if (bool) return v !== 0 ? 'true' : 'false';
  const n = typeof v === 'bigint' ? Number(v) : v;
  return Number.isFinite(n) ? '' + n : 'null';
}
