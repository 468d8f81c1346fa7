import { halfBits, type Datatype } from '@infer/contract';
import type { B64Tensor } from './types.js';

type Numeric = ArrayLike<number> | ArrayLike<bigint> | ArrayLike<boolean>;

/**
 * The typed array that holds each datatype's little-endian bytes. FP16 has
 * no typed array in Node 20: pass its raw bits as a Uint16Array.
 */
const ARRAY_OF: Record<Exclude<Datatype, 'BYTES'>, { new (length: number): ArrayBufferView & { length: number; [i: number]: number | bigint }; BYTES_PER_ELEMENT: number }> = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The values each integer datatype holds: the API refuses others (422), so the SDK never wraps one into range. */
const INTEGER_RANGE: Partial<Record<Datatype, readonly [bigint, bigint]>> = {
  UINT8: [0n, 255n],
  INT8: [-128n, 127n],
  UINT16: [0n, 65535n],
  INT16: [-32768n, 32767n],
  UINT32: [0n, 4294967295n],
  INT32: [-2147483648n, 2147483647n],
  UINT64: [0n, 18446744073709551615n],
  INT64: [-9223372036854775808n, 9223372036854775807n],
};

/** One value as its datatype holds it, or a TypeError: a value is sent exactly or not at all. */
function convert(datatype: Exclude<Datatype, 'BYTES'>, v: number | bigint | boolean, at: number): number | bigint {
  if (datatype === 'BOOL') {
    if (v === true || v === 1) return 1;
    if (v === false || v === 0) return 0;
    throw new TypeError(`BOOL values are true, false, 1 or 0; value ${at} is ${String(v)}`);
  }
  if (datatype === 'FP32' || datatype === 'FP64' || datatype === 'FP16') {
    if (typeof v !== 'number') throw new TypeError(`${datatype} values are numbers; value ${at} is ${typeof v}`);
    return datatype === 'FP16' ? halfBits(v) : v;
  }
  const [min, max] = INTEGER_RANGE[datatype]!;
  const n = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : undefined;
  if (n === undefined || n < min || n > max) {
    throw new TypeError(`${datatype} holds integers from ${min} to ${max}; value ${at} is ${String(v)}${typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v) ? ' (past 2^53: pass a bigint)' : ''}`);
  }
  return datatype === 'INT64' || datatype === 'UINT64' ? n : Number(n);
}

/**
 * A tensor in the `{datatype, shape, b64}` form, the fast path for large
 * inputs (no JSON number parsing on the server).
 *
 * `values` is ideally the datatype's own typed array (Float32Array for FP32,
 * BigInt64Array for INT64, a Uint16Array of raw bits for FP16, …), whose
 * bytes are taken as they are. Any other array is converted value by value,
 * exactly or not at all: an integer out of its datatype's range, a fraction
 * for an integer type, or a 64-bit integer past 2^53 given as a number (pass
 * a bigint) throws a TypeError, as the API would refuse the same value in a
 * nested array (422); FP16 numbers are rounded to half precision (to nearest
 * even), as Float32Array rounds FP32 ones.
 *
 * @example tensorB64('FP32', [64], new Float32Array(64).fill(0.5))
 */
export function tensorB64(datatype: Datatype, shape: readonly number[], values: Numeric | ArrayBufferView): B64Tensor {
  if (datatype === 'BYTES') throw new TypeError('BYTES tensors have no b64 form, and the API takes no BYTES (string) inputs');
  const Ctor = ARRAY_OF[datatype];
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new TypeError(`shape must be non-negative integers, got [${shape.join(', ')}]`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  let typed: ArrayBufferView & { length: number };
  if (values instanceof Ctor) {
    typed = values;
  } else {
    const source = values as ArrayLike<number | bigint | boolean>;
    const converted = new Ctor(source.length);
    for (let i = 0; i < source.length; i++) converted[i] = convert(datatype, source[i]!, i);
    typed = converted;
  }
  if (typed.length !== count) {
    throw new TypeError(`shape [${shape.join(', ')}] holds ${count} values, got ${typed.length}`);
  }
  let bytes = Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
  if (!LITTLE_ENDIAN && Ctor.BYTES_PER_ELEMENT > 1) {
    bytes = Buffer.from(bytes);
    if (Ctor.BYTES_PER_ELEMENT === 2) bytes.swap16();
    else if (Ctor.BYTES_PER_ELEMENT === 4) bytes.swap32();
    else bytes.swap64();
  }
  return { datatype, shape: [...shape], b64: bytes.toString('base64') };
}
