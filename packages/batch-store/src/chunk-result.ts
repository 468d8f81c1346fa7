import type { Datatype, JobError } from '@infer/contract';
import { elementCount, fromBytes, nestedJson, nestedJsonPieces, numericView, toBytes, type DecodedTensor, type TensorData } from '@infer/tensors';
import { failedLine, SUCCEEDED_LINE_TAIL, succeededLine, succeededLineHead } from './result-lines.js';

/**
 * One chunk's results as the worker stores them: which items failed and
 * why, and the raw output bytes of those that succeeded. They become NDJSON
 * lines only when the results are downloaded (`renderChunkResultPieces`).
 *
 * Why not store the lines: a result line of the shipped MLP is ~180 bytes of
 * text for 16 bytes of output. Printing floats is most of a worker's work on
 * a row after ONNX Runtime, and the text is what Redis would hold for
 * RESULT_TTL_SECONDS; raw bytes keep both small, and a download prints each
 * line once, as it streams.
 *
 * Stored form: the MAGIC line, a JSON header line (ChunkResultHeader), then
 * every output's bytes back to back, in the header's order.
 */
export interface ChunkResultHeader {
  start: number;
  count: number;
  custom_ids: (string | null)[];
  /** Items that failed, at upload or while running, by offset in the chunk. */
  failures: { offset: number; error: JobError }[];
  /** Offsets of the items that succeeded, in the order their outputs are stored. */
  order: number[];
  /** Each model output, over the rows of `order`: one instance shape for all of them, or one each. */
  outputs: { name: string; datatype: Exclude<Datatype, 'BYTES'>; shape?: number[]; shapes?: number[][]; bytes: number }[];
}

const MAGIC = Buffer.from('#chunk-result v1\n');

/** Collects a chunk's outcomes as its slices run; `encode()` gives the stored form. */
export class ChunkResultWriter {
  private readonly failures: ChunkResultHeader['failures'] = [];
  private readonly order: number[] = [];
  private readonly outputs: { name: string; datatype: Exclude<Datatype, 'BYTES'> | null; shapes: number[][]; parts: Buffer[]; bytes: number }[];

  constructor(
    private readonly start: number,
    private readonly count: number,
    private readonly customIds: (string | null)[],
    outputNames: readonly string[],
  ) {
    this.outputs = outputNames.map((name) => ({ name, datatype: null, shapes: [], parts: [], bytes: 0 }));
  }

  /** The output bytes collected so far: what the stored result will hold beside its header. */
  get outputBytes(): number {
    let n = 0;
    for (const o of this.outputs) n += o.bytes;
    return n;
  }

  fail(offset: number, error: JobError): void {
    this.failures.push({ offset, error });
  }

  /**
   * The outputs of one run. `offsets` are the items of its rows, in row
   * order; `batched`: each output's first dimension is those rows (else the
   * run had one row and each output is that row's whole tensor).
   */
  addRun(offsets: readonly number[], outputs: Record<string, DecodedTensor>, batched: boolean): void {
    for (const out of this.outputs) {
      const t = outputs[out.name];
      if (!t) throw new Error(`the run gave no output "${out.name}"`);
      if (out.datatype !== null && out.datatype !== t.datatype) throw new Error(`output "${out.name}" changed datatype between runs`);
      out.datatype = t.datatype;
      const shape = batched ? t.shape.slice(1) : t.shape;
      for (let k = 0; k < offsets.length; k++) out.shapes.push(shape);
      // A copy: ONNX Runtime's output buffers are not ours to keep.
      const bytes = Buffer.from(toBytes(t.data));
      out.parts.push(bytes);
      out.bytes += bytes.byteLength;
    }
    for (const o of offsets) this.order.push(o);
  }

  encode(): Buffer {
    const header: ChunkResultHeader = {
      start: this.start,
      count: this.count,
      custom_ids: this.customIds,
      failures: this.failures,
      order: this.order,
      outputs: this.outputs
        .filter((o) => o.datatype !== null)
        .map((o) => {
          const first = o.shapes[0]!;
          const same = o.shapes.every((s) => s === first || (s.length === first.length && s.every((d, i) => d === first[i])));
          return { name: o.name, datatype: o.datatype!, ...(same ? { shape: first } : { shapes: o.shapes }), bytes: o.bytes };
        }),
    };
    return Buffer.concat([MAGIC, Buffer.from(JSON.stringify(header) + '\n'), ...this.outputs.flatMap((o) => o.parts)]);
  }
}

/** A chunk none of whose items ran: those invalid at upload keep their error, the rest get `error`. */
export function failedChunkResult(start: number, count: number, customIds: (string | null)[], invalid: readonly { offset: number; error: JobError }[], error: JobError | null): Buffer {
  const writer = new ChunkResultWriter(start, count, customIds, []);
  const failed = new Map(invalid.map((f) => [f.offset, f.error]));
  for (let k = 0; k < count; k++) {
    const e = failed.get(k) ?? error;
    if (e) writer.fail(k, e);
  }
  return writer.encode();
}

/** About how many characters of NDJSON text `renderChunkResultPieces` puts in one piece. */
export const RESULT_PIECE_CHARS = 1 << 20;

/** Output values past which an item's line is itself printed in pieces of about this many values (~1.3 MB of FP32 text). */
export const LINE_PIECE_VALUES = 64 * 1024;

/**
 * The NDJSON lines of a stored chunk result, in item order, in pieces of
 * about `pieceChars` characters (whole lines; a line longer than that is a
 * piece of its own). Not one string for the chunk: a wide output (a mask, a
 * vocabulary's logits) prints ~19 characters a value, and 2048 rows of 16384
 * values would pass V8's longest string. The line of an item with more than
 * `pieceValues` output values is printed in pieces of about that many, so
 * that no one piece holds the event loop for long (4M FP32 values take
 * ~1.8 s). A value without the MAGIC line is already NDJSON (as an older
 * worker wrote it) and is passed through.
 */
export function* renderChunkResultPieces(stored: Buffer, pieceChars = RESULT_PIECE_CHARS, pieceValues = LINE_PIECE_VALUES): Generator<Buffer> {
  if (!stored.subarray(0, MAGIC.length).equals(MAGIC)) {
    yield stored;
    return;
  }
  const headerEnd = stored.indexOf(0x0a, MAGIC.length);
  const header = JSON.parse(stored.toString('utf8', MAGIC.length, headerEnd)) as ChunkResultHeader;
  const rowOf = new Int32Array(header.count).fill(-1);
  header.order.forEach((offset, r) => (rowOf[offset] = r));
  const errors = new Map(header.failures.map((f) => [f.offset, f.error]));
  let at = headerEnd + 1;
  const outputs = header.outputs.map((o, j) => {
    const data = numericView(o.datatype, fromBytes(o.datatype, stored.subarray(at, at + o.bytes)));
    at += o.bytes;
    return { prefix: (j ? ',' : '{') + JSON.stringify(o.name) + ':', ...rowsJson(o, data) };
  });
  let out = '';
  for (let k = 0; k < header.count; k++) {
    const customId = header.custom_ids[k] ?? null;
    const r = rowOf[k]!;
    const error = errors.get(k);
    if (error || r < 0) {
      out += failedLine(header.start + k, customId, error ?? { code: 'internal_error', message: 'the item has no stored result' });
    } else {
      let values = 0;
      for (const o of outputs) values += o.values(r);
      if (values > pieceValues) {
        // A line too long to print in one go: what is pending first, then the line in pieces.
        if (out) yield Buffer.from(out);
        out = '';
        yield Buffer.from(succeededLineHead(header.start + k, customId) + (outputs.length ? '' : '{'));
        for (const o of outputs) {
          yield Buffer.from(o.prefix);
          for (const piece of o.pieces(r, pieceValues)) yield Buffer.from(piece);
        }
        yield Buffer.from('}' + SUCCEEDED_LINE_TAIL);
        continue;
      }
      let json = '';
      for (const o of outputs) json += o.prefix + o.json(r);
      out += succeededLine(header.start + k, customId, (json || '{') + '}');
    }
    if (out.length >= pieceChars) {
      yield Buffer.from(out);
      out = '';
    }
  }
  if (out) yield Buffer.from(out);
}

/** A stored chunk result's NDJSON lines in one buffer (for a chunk known to be small). */
export function renderChunkResult(stored: Buffer): Buffer {
  const pieces = [...renderChunkResultPieces(stored)];
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

/** Row r of one stored output: as JSON, its count of values, and as JSON in pieces. */
function rowsJson(
  o: ChunkResultHeader['outputs'][number],
  data: TensorData,
): { json: (r: number) => string; values: (r: number) => number; pieces: (r: number, pieceValues: number) => Iterable<string> } {
  const bool = o.datatype === 'BOOL';
  if (o.shape) {
    const shape = o.shape;
    const per = elementCount(shape);
    return {
      json: (r) => nestedJson(data, shape, bool, r * per),
      values: () => per,
      pieces: (r, pieceValues) => nestedJsonPieces(data, shape, bool, r * per, pieceValues),
    };
  }
  const shapes = o.shapes ?? [];
  const offsets = new Array<number>(shapes.length);
  let elements = 0;
  shapes.forEach((s, r) => {
    offsets[r] = elements;
    elements += elementCount(s);
  });
  if (elements !== data.length) throw new Error(`stored output "${o.name}" holds ${data.length} elements, its shapes need ${elements}`);
  return {
    json: (r) => nestedJson(data, shapes[r]!, bool, offsets[r]!),
    values: (r) => elementCount(shapes[r]!),
    pieces: (r, pieceValues) => nestedJsonPieces(data, shapes[r]!, bool, offsets[r]!, pieceValues),
  };
}
