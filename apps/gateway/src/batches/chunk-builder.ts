import { isUtf8 } from 'node:buffer';
import { BYTES_PER_ELEMENT, BatchItem, customIdFits, type BulkInput, type Datatype, type JobError, type SharedDim, type TensorSpec } from '@infer/contract';
import { isAppError } from '@infer/errors';
import { allocate, decodeInput, elementCount, sharedDimMismatch, toBytes, type DecodedTensor, type TensorData } from '@infer/tensors';
import { firstIssue } from '../http/first-issue.js';
import { LineScanner, scanTargets } from './line-scanner.js';
import { itemLabel, lineText, type RawItem } from './ndjson-lines.js';

export interface ChunkLimits {
  /**
   * Most items a chunk holds. Each chunk costs a fixed few dozen Redis
   * commands (BullMQ's add, fetch and completion, plus the batch store's),
   * so 2048 rows keep a batch near 0.03 commands a row.
   * @default 2048
   */
  maxRows: number;
  /** Most input bytes a chunk packs (big tensors make smaller chunks). @default 1 MiB */
  maxBytes: number;
  /**
   * Most output bytes a chunk's rows make, where the model's outputs have
   * fixed shapes: a small input with a wide output (a mask, a vocabulary's
   * logits) would otherwise make 2048-row chunks whose results the worker
   * holds, Redis stores as one value, and a download reads whole.
   * @default 16 MiB
   */
  maxOutputBytes: number;
}

export const DEFAULT_CHUNK_LIMITS: ChunkLimits = { maxRows: 2048, maxBytes: 1 << 20, maxOutputBytes: 16 << 20 };

/** Longest error message a failed item keeps. */
const MAX_ITEM_MESSAGE = 1024;

/** What building chunks needs of a model: its name (for messages), its inputs, and its outputs (to size chunks). Plain data, so a parse thread can have it. */
export interface BatchModel {
  name: string;
  inputs: readonly TensorSpec[];
  outputs: readonly TensorSpec[];
  /** Dimensions its inputs share by name: an item must give each one length. */
  sharedDims?: readonly SharedDim[];
}

/** Bytes a row of these tensors takes (strings counted as none), or 0 when a shape is variable. */
function fixedRowBytes(specs: readonly TensorSpec[]): number {
  if (specs.some((s) => s.shape.includes(-1))) return 0;
  return specs.reduce((sum, s) => sum + elementCount(s.shape) * BYTES_PER_ELEMENT[s.datatype], 0);
}

/** A full chunk, ready for the queue. */
export interface BuiltChunk {
  start: number;
  count: number;
  rows: number;
  custom_ids: (string | null)[];
  failures: { offset: number; error: JobError }[];
  inputs: Record<string, BulkInput>;
  /** Every input's bytes, back to back (a copy: the builder reuses its buffers); `inputs` says where each lies. */
  packed: Buffer;
}

/** Packing of one model input across the rows of a chunk. */
interface Packer {
  name: string;
  datatype: Exclude<Datatype, 'BYTES'>;
  /** Fixed-shape input: rows land back to back in one preallocated typed array. */
  fixed: { shape: number[]; per: number; data: TensorData } | null;
  /** Input with variable dimensions: each row's bytes and shape. */
  parts: Buffer[];
  shapes: number[][];
}

/**
 * Builds the chunks of a batch, one item at a time: parses it (NDJSON text)
 * or takes it (a JSON element), validates it against the model exactly as
 * `POST /v1/jobs` would, and packs its tensors. A fixed-shape input is
 * written straight into one contiguous typed array for the whole chunk, which
 * the worker views as a [rows, ...shape] tensor. An item that fails becomes a
 * failure (offset and `{code, message}`) and the rest go on.
 */
export class ChunkBuilder {
  private start = 0;
  private count = 0;
  private rows = 0;
  private bytes = 0;
  private customIds: (string | null)[] = [];
  private failures: { offset: number; error: JobError }[] = [];
  private readonly packers: Packer[];
  private readonly rowCap: number;
  private readonly known: Set<string>;
  /** The byte-level reader for lines of the usual shape; null when an input has variable dimensions. */
  private readonly scanner: LineScanner | null;

  constructor(
    private readonly model: BatchModel,
    private readonly limits: ChunkLimits = DEFAULT_CHUNK_LIMITS,
  ) {
    this.known = new Set(model.inputs.map((s) => s.name));
    // Where a row's size is known, size the chunk to the byte budgets up front: its inputs', and its outputs'.
    const inRow = fixedRowBytes(model.inputs);
    // Variable outputs' sizes are unknown up front: the fixed ones alone still bound a chunk (from below).
    const outRow = fixedRowBytes(model.outputs.filter((s) => !s.shape.includes(-1)));
    this.rowCap = Math.max(
      1,
      Math.min(limits.maxRows, inRow > 0 ? Math.floor(limits.maxBytes / inRow) : Infinity, outRow > 0 ? Math.floor(limits.maxOutputBytes / outRow) : Infinity),
    );
    this.packers = model.inputs.map((spec) => {
      if (spec.datatype === 'BYTES') return { name: spec.name, datatype: 'UINT8', fixed: null, parts: [], shapes: [] };
      const fixed = spec.shape.includes(-1) ? null : { shape: spec.shape, per: elementCount(spec.shape), data: allocate(spec.datatype, this.rowCap * elementCount(spec.shape)) };
      return { name: spec.name, datatype: spec.datatype, fixed, parts: [], shapes: [] };
    });
    const fixed = this.packers.flatMap((p, i) => (p.fixed && model.inputs[i]!.datatype !== 'BYTES' ? [{ name: p.name, datatype: p.datatype, shape: p.fixed.shape, data: p.fixed.data }] : []));
    this.scanner = fixed.length === model.inputs.length && fixed.length > 0 ? new LineScanner(scanTargets(fixed)) : null;
  }

  /** Items in the chunk being built. */
  get size(): number {
    return this.count;
  }

  /** Index of the next item across the whole batch. */
  get nextIndex(): number {
    return this.start + this.count;
  }

  get full(): boolean {
    return this.count >= this.rowCap || this.bytes >= this.limits.maxBytes;
  }

  add(item: RawItem): void {
    const offset = this.count++;
    let customId: string | null = null;
    if (item.kind === 'tooLong') return this.fail(offset, customId, 'invalid_input', `${itemLabel(item)}: longer than the limit of ${item.limit} bytes a line`);
    let value: unknown;
    if (item.kind === 'line') {
      // The common case, read from the bytes into this row's slots; the rest is parsed.
      const scanned = this.scanner?.scan(item.source, item.start, item.end, this.rows);
      if (scanned !== undefined) return this.addPacked(scanned);
      // JSON is UTF-8 (RFC 8259): decoding other bytes would put U+FFFD in their place, a custom_id the client never sent.
      if (!isUtf8(item.source.subarray(item.start, item.end))) return this.fail(offset, customId, 'invalid_json', `${itemLabel(item)}: not valid UTF-8`);
      try {
        value = JSON.parse(lineText(item));
      } catch (err) {
        return this.fail(offset, customId, 'invalid_json', `${itemLabel(item)}: not valid JSON (${(err as Error).message})`);
      }
    } else {
      value = item.value;
    }
    const label = itemLabel(item);
    // Keep the custom id of an item that fails, when it has a usable one, so the client can match it.
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const cid = (value as { custom_id?: unknown }).custom_id;
      if (typeof cid === 'string' && customIdFits(cid)) customId = cid;
    }
    if (!isItemShape(value)) {
      // The quick check failed: let the schema say why.
      const parsed = BatchItem.safeParse(value);
      if (!parsed.success) return this.fail(offset, customId, 'invalid_input', `${label}: ${firstIssue(parsed.error)}`);
    }
    const input = (value as BatchItem).input;
    for (const name in input) {
      if (!this.known.has(name)) {
        return this.fail(offset, customId, 'invalid_input', `${label}: unknown input "${name}"; model ${this.model.name} takes ${[...this.known].map((n) => `"${n}"`).join(', ')}`);
      }
    }
    // A nested array for a fixed-shape float input is written straight into
    // the chunk's buffer at this row's slot; anything else is decoded as
    // `POST /v1/jobs` decodes it. The row only counts once every input is
    // valid, so a bad second input leaves at most an unused slot behind.
    const row = this.rows;
    const decoded: (DecodedTensor | null)[] = [];
    try {
      for (let i = 0; i < this.model.inputs.length; i++) {
        const spec = this.model.inputs[i]!;
        if (!Object.hasOwn(input, spec.name)) return this.fail(offset, customId, 'invalid_input', `${label}: missing input "${spec.name}"`);
        const v = input[spec.name];
        const fixed = this.packers[i]!.fixed;
        if (fixed && (fixed.data instanceof Float32Array || fixed.data instanceof Float64Array) && writeNested(v, spec.shape, 0, fixed.data, row * fixed.per) === fixed.per) {
          decoded.push(null);
        } else {
          decoded.push(decodeInput(v, spec, `${label}: input "${spec.name}"`));
        }
      }
    } catch (err) {
      // Whatever one item does (a RangeError from an allocation it asked for included), it fails alone:
      // the batch's other items still run.
      if (!isAppError(err)) return this.fail(offset, customId, 'invalid_input', `${label}: could not be read (${(err as Error).message})`);
      return this.fail(offset, customId, err.code, err.message);
    }
    if (this.model.sharedDims) {
      // A fixed-shape input (written straight into the chunk) has its spec's shape; the shared ones are variable.
      const mismatch = sharedDimMismatch(this.model.sharedDims, this.model.inputs, decoded.map((t, i) => t?.shape ?? this.model.inputs[i]!.shape));
      if (mismatch) return this.fail(offset, customId, 'invalid_input', `${label}: ${mismatch}`);
    }
    this.rows++;
    this.customIds.push(customId);
    for (let i = 0; i < decoded.length; i++) {
      const t = decoded[i] ?? null;
      const packer = this.packers[i]!;
      if (packer.fixed) {
        if (t) (packer.fixed.data as Float32Array).set(t.data as Float32Array, row * packer.fixed.per);
        this.bytes += packer.fixed.per * packer.fixed.data.BYTES_PER_ELEMENT;
      } else {
        packer.parts.push(toBytes(t!.data));
        packer.shapes.push(t!.shape);
        this.bytes += t!.data.byteLength;
      }
    }
  }

  /** A row the scanner wrote into every fixed packer. */
  private addPacked(customId: string | null): void {
    this.rows++;
    this.customIds.push(customId);
    for (const p of this.packers) this.bytes += p.fixed!.per * p.fixed!.data.BYTES_PER_ELEMENT;
  }

  private fail(offset: number, customId: string | null, code: string, message: string): void {
    this.customIds.push(customId);
    // Messages may quote the item (an unknown input's name): kept in Redis with the results, so bounded.
    this.failures.push({ offset, error: { code, message: message.length > MAX_ITEM_MESSAGE ? `${message.slice(0, MAX_ITEM_MESSAGE - 3)}...` : message } });
  }

  /** Hand out the chunk built so far and start the next one. */
  take(): BuiltChunk {
    const inputs: Record<string, BulkInput> = {};
    const parts: Buffer[] = [];
    let offset = 0;
    for (const p of this.packers) {
      const bytes = p.fixed ? toBytes(p.fixed.data.subarray(0, this.rows * p.fixed.per)) : Buffer.concat(p.parts);
      inputs[p.name] = p.fixed
        ? { datatype: p.datatype, shape: p.fixed.shape, offset, bytes: bytes.byteLength }
        : { datatype: p.datatype, shapes: p.shapes, offset, bytes: bytes.byteLength };
      parts.push(bytes);
      offset += bytes.byteLength;
      p.parts = [];
      p.shapes = [];
    }
    const chunk: BuiltChunk = {
      start: this.start,
      count: this.count,
      rows: this.rows,
      custom_ids: this.customIds,
      failures: this.failures,
      inputs,
      // Buffer.concat copies, also for a single part: the fixed packers' arrays are refilled by the next chunk.
      packed: this.rows > 0 ? Buffer.concat(parts, offset) : Buffer.alloc(0),
    };
    this.start += this.count;
    this.count = 0;
    this.rows = 0;
    this.bytes = 0;
    this.customIds = [];
    this.failures = [];
    return chunk;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The `BatchItem` schema, checked by hand: this runs for every line, the schema only for lines that fail. */
function isItemShape(v: unknown): v is BatchItem {
  if (!isPlainObject(v) || !isPlainObject(v.input)) return false;
  for (const key in v) if (key !== 'input' && key !== 'custom_id') return false;
  return v.custom_id === undefined || (typeof v.custom_id === 'string' && customIdFits(v.custom_id));
}

/**
 * Write a nested array of exactly `shape` (finite numbers) into `out` from
 * `at`; returns how many values it wrote, or -1 at the first thing that does
 * not fit (the caller then decodes the value the slow way for the error).
 */
function writeNested(v: unknown, shape: readonly number[], depth: number, out: Float32Array | Float64Array, at: number): number {
  if (depth === shape.length) {
    if (typeof v !== 'number') return -1;
    out[at] = v;
    // Not finite, or finite as a double but overflowing FP32.
    return Number.isFinite(out[at]!) ? 1 : -1;
  }
  if (!Array.isArray(v) || v.length !== shape[depth]) return -1;
  let written = 0;
  if (depth === shape.length - 1) {
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (typeof x !== 'number') return -1;
      out[at + i] = x;
      if (!Number.isFinite(out[at + i]!)) return -1;
    }
    return v.length;
  }
  for (const child of v) {
    const n = writeNested(child, shape, depth + 1, out, at + written);
    if (n < 0) return -1;
    written += n;
  }
  return written;
}
