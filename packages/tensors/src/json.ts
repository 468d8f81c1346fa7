import { BYTES_PER_ELEMENT, type Datatype } from '@infer/contract';
import { elementCount } from './shape.js';
import { fromBytes, numericView, type TensorData } from './typed-arrays.js';

/**
 * Tensors printed as the API's nested JSON arrays, straight from typed
 * arrays or raw bytes: results are stored as bytes (a tenth of the text's
 * size) and printed once, when a client reads them.
 */

/**
 * `JSON.stringify(toNested(data, shape, bool, offset))`, without building the
 * arrays: the same text (numbers print as JSON prints them; a non-finite one
 * as null), so a job's output and a batch row's are byte for byte the same.
 * 64-bit integers print with all their digits, where toNested's doubles
 * round those past 2^53.
 */
export function nestedJson(data: TensorData, shape: readonly number[], bool: boolean, offset = 0): string {
  if (shape.length === 1 && !bool && isNumberArray(data)) return numberListJson(data, offset, shape[0]!);
  return nestedJsonAt(data, shape, bool, 0, { i: offset });
}

/** One tensor of `shape` held as little-endian `bytes`, as nested JSON. */
export function bytesJson(datatype: Exclude<Datatype, 'BYTES'>, bytes: Uint8Array, shape: readonly number[]): string {
  const want = elementCount(shape) * BYTES_PER_ELEMENT[datatype];
  if (bytes.byteLength !== want) throw new Error(`${bytes.byteLength} bytes of ${datatype} cannot be of shape [${shape.join(',')}]`);
  return nestedJson(numericView(datatype, fromBytes(datatype, bytes)), shape, datatype === 'BOOL');
}

/**
 * bytesJson's text in pieces of at most about `pieceValues` values each:
 * joined, they are bytesJson's text. For a tensor too large to print in one
 * go without holding the event loop (4M FP32 values print as ~80 MB in
 * ~1.8 s): a caller sends each piece and yields between them.
 */
export function* bytesJsonPieces(datatype: Exclude<Datatype, 'BYTES'>, bytes: Uint8Array, shape: readonly number[], pieceValues: number): Generator<string> {
  const want = elementCount(shape) * BYTES_PER_ELEMENT[datatype];
  if (bytes.byteLength !== want) throw new Error(`${bytes.byteLength} bytes of ${datatype} cannot be of shape [${shape.join(',')}]`);
  yield* nestedJsonPieces(numericView(datatype, fromBytes(datatype, bytes)), shape, datatype === 'BOOL', 0, pieceValues);
}

/** nestedJson's text in pieces of at most about `pieceValues` values each (see bytesJsonPieces). */
export function* nestedJsonPieces(data: TensorData, shape: readonly number[], bool: boolean, offset: number, pieceValues: number): Generator<string> {
  // At least one value a piece: a run of none would never end.
  pieceValues = pieceValues >= 1 ? Math.floor(pieceValues) : 1;
  if (shape.length === 0 || elementCount(shape) <= pieceValues) {
    yield nestedJson(data, shape, bool, offset);
    return;
  }
  const n = shape[0]!;
  yield '[';
  if (shape.length === 1) {
    // A long list: runs of it, each printed as a list with its brackets taken off.
    for (let i = 0; i < n; i += pieceValues) yield (i ? ',' : '') + nestedJson(data, [Math.min(pieceValues, n - i)], bool, offset + i).slice(1, -1);
  } else {
    const rest = shape.slice(1);
    const sub = elementCount(rest);
    if (sub <= pieceValues) {
      // Whole sub-tensors, as many to a piece as fit.
      const per = Math.floor(pieceValues / sub);
      for (let k = 0; k < n; k += per) {
        let piece = k ? ',' : '';
        for (let j = k; j < Math.min(n, k + per); j++) piece += (j > k ? ',' : '') + nestedJson(data, rest, bool, offset + j * sub);
        yield piece;
      }
    } else {
      for (let k = 0; k < n; k++) {
        if (k) yield ',';
        yield* nestedJsonPieces(data, rest, bool, offset + k * sub, pieceValues);
      }
    }
  }
  yield ']';
}

type NumberArray = Exclude<TensorData, BigInt64Array | BigUint64Array>;

const isNumberArray = (data: TensorData): data is NumberArray => !(data instanceof BigInt64Array || data instanceof BigUint64Array);

/** Reused by numberListJson: one array per process, as rendering never yields. */
let row: number[] = [];

/**
 * The usual case, a list of numbers: copied into one reused array and handed
 * to JSON.stringify, which prints numbers straight into its output (as JS
 * prints them, non-finite ones as null) instead of making a string of each:
 * about 30% less CPU than concatenating them.
 */
function numberListJson(data: NumberArray, from: number, n: number): string {
  if (row.length !== n) row = new Array<number>(n).fill(0);
  for (let i = 0; i < n; i++) row[i] = data[from + i]!;
  return JSON.stringify(row);
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
  // A 64-bit integer with all its digits: as a double, one past 2^53 would print as another integer.
  if (typeof v === 'bigint') return v.toString();
  return Number.isFinite(v) ? '' + v : 'null';
}
