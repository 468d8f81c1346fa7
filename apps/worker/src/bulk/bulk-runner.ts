import { spanTime } from '@infer/tracing';
import { BYTES_PER_ELEMENT, type BulkChunkPayload, type Datatype, type JobError } from '@infer/contract';
import { ChunkResultWriter, failedChunkResult } from '@infer/batch-store';
import { runModel, type ModelVersion, type RunWatch } from '@infer/models';
import { crashedOnInput, runIsolating } from '../poison-isolation.js';
import { outputTooLarge, outputsTooLargeTogether, type OutputLimits } from '../output-limits.js';
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
 * the model in slices of at most `max_batch_size` rows, and collect each
 * item's outcome (ChunkResultWriter: outputs as raw bytes, rendered to
 * NDJSON when the results are downloaded).
 *
 * A fixed-shape input arrives as one contiguous little-endian buffer of all
 * the chunk's valid rows, so it is viewed as a [rows, ...shape] tensor and a
 * slice is a `subarray` of it: no per-row work before ONNX Runtime. Inputs
 * with variable dimensions carry each row's shape; rows are grouped by shape
 * (docs/api.md: never stack differing shapes) and each slice is stacked.
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
  /**
   * For a chunk taken again after a stall (its worker died or hung, maybe on
   * one of its rows): run its rows one at a time, each watched (`watch`, by
   * item offset: noted in its turn before its run, the note cleared after),
   * and fail the row `blamed` names (the one a worker was running alone when
   * it died) without running it.
   */
  alone?: { blamed: number | undefined; watch: (offset: number) => RunWatch };
  /** Told of each run of a chunk that does not run alone (its run note, see ChunkRunMark). */
  watch?: RunWatch;
  /** What an item's outputs, and the chunk's stored results, may hold; past them items fail `output_too_large` (output-limits.ts). */
  limits: OutputLimits;
}

export interface ChunkResult {
  /** The chunk's stored results (ChunkResultWriter); empty when `stopped`. */
  record: Buffer;
  succeeded: number;
  /** Items that failed while running (those invalid at upload are not counted here). */
  failed: number;
  stopped: boolean;
  /** Each ONNX Runtime run: rows, milliseconds and when it ended (epoch ms, sub-millisecond), for metrics and traces. */
  runs: { size: number; ms: number; endedAt: number }[];
}

/** Run every valid row of a decoded chunk and collect every item's outcome. */
export async function runChunk(model: ModelVersion, p: BulkChunkPayload, chunk: DecodedChunk, hooks: RunChunkHooks): Promise<ChunkResult> {
  const writer = new ChunkResultWriter(p.start, p.count, p.custom_ids, model.outputs.map((o) => o.name));
  for (const [offset, error] of chunk.failures) writer.fail(offset, error);
  const result: ChunkResult = { record: Buffer.alloc(0), succeeded: 0, failed: 0, stopped: false, runs: [] };
  const inputs = model.inputs.map((spec) => [spec.name, chunk.inputs.get(spec.name)!] as const);

  const alone = hooks.alone;
  for (const slice of slices(model, inputs.map(([, i]) => i), p.rows, alone !== undefined)) {
    const go = hooks.beforeSlice();
    if (!(typeof go === 'boolean' ? go : await go)) {
      result.stopped = true;
      return result;
    }
    const offset = chunk.rowOffsets[slice.first]!;
    if (alone && offset === alone.blamed) {
      writer.fail(offset, crashedOnInput());
      result.failed++;
      continue;
    }
    const watch = alone ? alone.watch(offset) : hooks.watch;
    const run = async (part: Slice): Promise<void> => {
      const feeds: Record<string, DecodedTensor> = {};
      for (const [name, input] of inputs) feeds[name] = sliceFeed(model, input, part);
      const { outputs, inferenceMs } = await runModel(model, feeds, watch);
      result.runs.push({ size: part.count, ms: inferenceMs, endedAt: spanTime() });
      const offsets = Array.from({ length: part.count }, (_, k) => chunk.rowOffsets[rowAt(part, k)]!);
      // A run's rows share its outputs' shapes (a batched output's first dimension is the rows), so each row's share is equal.
      let bytes = 0;
      for (const t of Object.values(outputs)) bytes += t.data.byteLength;
      const perRow = bytes / part.count;
      const { maxOutputBytes, callOutputBytes } = hooks.limits;
      // Over MAX_OUTPUT_BYTES each row fails alone; else the rows that still fit the chunk's stored results are kept, in order.
      const fit = perRow > maxOutputBytes ? 0 : perRow === 0 ? part.count : Math.max(0, Math.min(part.count, Math.floor((callOutputBytes - writer.outputBytes) / perRow)));
      if (fit === part.count) writer.addRun(offsets, outputs, model.batched);
      else if (fit > 0) writer.addRun(offsets.slice(0, fit), firstRows(outputs, part.count, fit), model.batched);
      if (fit < part.count) {
        const error = perRow > maxOutputBytes ? outputTooLarge(perRow, maxOutputBytes) : outputsTooLargeTogether(perRow, 'the items run before it in its batch chunk', callOutputBytes);
        for (const o of offsets.slice(fit)) writer.fail(o, error);
      }
      result.succeeded += fit;
      result.failed += part.count - fit;
    };
    // A failed run is bisected: a poison row fails alone (its line keeps its number), the rest of the slice succeeds.
    const rows = Array.from({ length: slice.count }, (_, k) => rowAt(slice, k));
    await runIsolating(rows, (part) => run(sliceOf(part)), (row, error) => {
      writer.fail(chunk.rowOffsets[row]!, error);
      result.failed++;
    });
  }
  result.record = writer.encode();
  return result;
}

/** The results of a chunk whose rows cannot run at all (a malformed payload, a chunk that kept killing workers). */
export function failChunk(p: BulkChunkPayload, error: JobError): { record: Buffer; failed: number } {
  return { record: failedChunkResult(p.start, p.count, p.custom_ids, p.failures, error), failed: p.count - p.failures.length };
}

/** The first `rows` of a batched run's outputs (each output's first dimension is the run's `of` rows). */
function firstRows(outputs: Record<string, DecodedTensor>, of: number, rows: number): Record<string, DecodedTensor> {
  const out: Record<string, DecodedTensor> = {};
  for (const [name, t] of Object.entries(outputs)) {
    const perRow = t.data.length / of;
    out[name] = { datatype: t.datatype, shape: [rows, ...t.shape.slice(1)], data: t.data.subarray(0, rows * perRow) };
  }
  return out;
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

/** Some rows of a chunk as a slice: a plain range when they are consecutive. */
function sliceOf(rows: readonly number[]): Slice {
  const first = rows[0]!;
  const consecutive = rows.every((r, k) => r === first + k);
  return { first, count: rows.length, rows: consecutive ? null : rows };
}

/**
 * The runs of a chunk, in order. A model that is not batched, or a chunk run
 * `oneByOne`, runs one row at a time; otherwise rows of one shape, in arrival
 * order, at most `max_batch_size` a run. When every input has one shape,
 * runs are plain ranges of rows.
 */
function slices(model: ModelVersion, inputs: readonly ChunkInput[], rows: number, oneByOne: boolean): Slice[] {
  const size = model.batched && !oneByOne ? Math.max(1, model.maxBatchSize) : 1;
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
