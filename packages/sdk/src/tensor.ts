import type { Datatype } from '@infer/contract';
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

/**
 * A tensor in the `{datatype, shape, b64}` form, the fast path for large
 * inputs (no JSON number parsing on the server).
 *
 * `values` is ideally the datatype's own typed array (Float32Array for FP32,
 * BigInt64Array for INT64, …), whose bytes are taken as they are; any other
 * array of numbers is converted first.
 *
 * @example tensorB64('FP32', [64], new Float32Array(64).fill(0.5))
 */
export function tensorB64(datatype: Datatype, shape: readonly number[], values: Numeric | ArrayBufferView): B64Tensor {
  if (datatype === 'BYTES') throw new TypeError('BYTES tensors have no fixed-width b64 form; use a nested array');
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
    const big = Ctor === BigInt64Array || Ctor === BigUint64Array;
    for (let i = 0; i < source.length; i++) {
      const v = source[i]!;
      converted[i] = big ? BigInt(v) : Number(v);
    }
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
