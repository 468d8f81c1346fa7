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

/** One input of a decoded chunk. */
interface ChunkInput {
  datatype: Exclude<Datatype, 'BYTES'>;
  data: TensorData;
  /** Each valid row's shape (the same array for every row when the input is fixed-shape). */
  shapes: number[][];
  /** Element offset of each row in `data`. */
  offsets: number[];
  /** Elements per row when every row has the same shape, else -1. */
  per: number;
}

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
 * bytes as typed arrays. Throws MalformedChunkError.
 */
export function decodeChunk(model: ModelVersion, p: BulkChunkPayload): DecodedChunk {
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
    let shapes: number[][];
    let per = -1;
    if (enc.shape) {
      if (!shapeMatches(enc.shape, spec.shape)) throw bad(`input "${spec.name}" shape ${formatShape(enc.shape)} does not fit ${formatShape(spec.shape)}`);
      shapes = new Array<number[]>(p.rows).fill(enc.shape);
      per = elementCount(enc.shape);
    } else if (enc.shapes && enc.shapes.length === p.rows) {
      shapes = enc.shapes;
      for (const s of shapes) if (!shapeMatches(s, spec.shape)) throw bad(`input "${spec.name}" row shape ${formatShape(s)} does not fit ${formatShape(spec.shape)}`);
    } else {
      throw bad(`input "${spec.name}" gives neither a shape nor one shape per row`);
    }
    const offsets = new Array<number>(p.rows);
    let elements = 0;
    for (let r = 0; r < p.rows; r++) {
      offsets[r] = elements;
      elements += per >= 0 ? per : elementCount(shapes[r]!);
    }
    const bytes = Buffer.from(enc.b64, 'base64');
    if (bytes.byteLength !== elements * BYTES_PER_ELEMENT[datatype]) {
      throw bad(`input "${spec.name}" holds ${bytes.byteLength} bytes, its rows need ${elements * BYTES_PER_ELEMENT[datatype]}`);
    }
    inputs.set(spec.name, { datatype, data: fromBytes(datatype, bytes), shapes, offsets, per });
  }
  return { inputs, rowOffsets, failures };
}

export interface RunChunkHooks {
  /**
   * Awaited before each slice: yield to interactive work, look for a cancel.
   * Resolving false stops the chunk (its batch has ended).
   */
  beforeSlice(): Promise<boolean>;
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
    if (!(await hooks.beforeSlice())) {
      result.stopped = true;
      return result;
    }
    const feeds: Record<string, DecodedTensor> = {};
    for (const [name, input] of inputs) feeds[name] = sliceFeed(model, input, slice);
    const item = (k: number) => chunk.rowOffsets[slice[k]!]!;
    try {
      const { outputs, inferenceMs } = await runModel(model, feeds);
      result.runs.push({ size: slice.length, ms: inferenceMs });
      const rendered = model.outputs.map((spec) => {
        const t = outputs[spec.name]!;
        const shape = model.batched ? t.shape.slice(1) : t.shape;
        const per = elementCount(shape);
        return { key: JSON.stringify(spec.name), t, shape, per, bool: t.datatype === 'BOOL' };
      });
      for (let k = 0; k < slice.length; k++) {
        let json = '{';
        for (let j = 0; j < rendered.length; j++) {
          const o = rendered[j]!;
          json += (j ? ',' : '') + o.key + ':' + nestedJson(o.t.data, o.shape, o.bool, model.batched ? k * o.per : 0);
        }
        const offset = item(k);
        lines[offset] = succeededLine(p.start + offset, p.custom_ids[offset] ?? null, json + '}');
      }
      result.succeeded += slice.length;
    } catch (err) {
      const error: JobError = { code: 'inference_failed', message: `ONNX Runtime failed: ${(err as Error).message}` };
      for (let k = 0; k < slice.length; k++) {
        const offset = item(k);
        lines[offset] = failedLine(p.start + offset, p.custom_ids[offset] ?? null, error);
      }
      result.failed += slice.length;
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
 * Row indices (into the valid rows) of each run, in order. A model that is
 * not batched runs one row at a time; otherwise rows of one shape, in
 * arrival order, at most `max_batch_size` a run.
 */
function slices(model: ModelVersion, inputs: readonly ChunkInput[], rows: number): number[][] {
  const size = model.batched ? Math.max(1, model.maxBatchSize) : 1;
  const groups: number[][] = [];
  if (inputs.every((i) => i.per >= 0)) {
    groups.push(Array.from({ length: rows }, (_, r) => r));
  } else {
    const byShape = new Map<string, number[]>();
    for (let r = 0; r < rows; r++) {
      const key = inputs.map((i) => i.shapes[r]!.join('x')).join('|');
      let g = byShape.get(key);
      if (!g) byShape.set(key, (g = []));
      g.push(r);
    }
    groups.push(...byShape.values());
  }
  const out: number[][] = [];
  for (const g of groups) for (let i = 0; i < g.length; i += size) out.push(g.slice(i, i + size));
  return out;
}

/** One input's tensor for a run: a view of the chunk when its rows are contiguous, else a stacked copy. */
function sliceFeed(model: ModelVersion, input: ChunkInput, slice: readonly number[]): DecodedTensor {
  const first = slice[0]!;
  const shape = input.shapes[first]!;
  if (!model.batched) {
    const n = elementCount(shape);
    return { datatype: input.datatype, shape, data: input.data.subarray(input.offsets[first]!, input.offsets[first]! + n) };
  }
  const per = elementCount(shape);
  const last = slice[slice.length - 1]!;
  if (input.per >= 0 && last - first === slice.length - 1) {
    const from = input.offsets[first]!;
    return { datatype: input.datatype, shape: [slice.length, ...shape], data: input.data.subarray(from, from + per * slice.length) };
  }
  const out = allocate(input.datatype, per * slice.length);
  slice.forEach((r, k) => {
    const from = input.offsets[r]!;
    (out as Float32Array).set(input.data.subarray(from, from + per) as Float32Array, k * per);
  });
  return { datatype: input.datatype, shape: [slice.length, ...shape], data: out };
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
