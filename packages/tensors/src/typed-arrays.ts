import type { Datatype } from '@infer/contract';

export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

type TypedArrayCtor = {
  new (length: number): TensorData;
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * The typed array ONNX Runtime expects for each datatype. BOOL is a
 * Uint8Array of 0/1, and FP16 travels as raw Uint16 bit patterns (Node 20
 * has no Float16Array), which is what onnxruntime-node takes for float16.
 */
export const TYPED_ARRAY_OF: Record<Exclude<Datatype, 'BYTES'>, TypedArrayCtor> = {
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

export function allocate(datatype: Exclude<Datatype, 'BYTES'>, length: number): TensorData {
  return new TYPED_ARRAY_OF[datatype](length);
}

/**
 * View raw little-endian bytes as a typed array. Buffers from `Buffer.from`
 * may share a pool at an unaligned offset, so copy into a fresh, aligned
 * ArrayBuffer first.
 */
export function fromBytes(datatype: Exclude<Datatype, 'BYTES'>, bytes: Uint8Array): TensorData {
  const ctor = TYPED_ARRAY_OF[datatype];
  if (bytes.byteOffset % ctor.BYTES_PER_ELEMENT === 0) {
    return new ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength / ctor.BYTES_PER_ELEMENT);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new ctor(copy.buffer, 0, bytes.byteLength / ctor.BYTES_PER_ELEMENT);
}

export function toBytes(data: TensorData): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * IEEE 754 half-precision bit patterns (how FP16 travels, see TYPED_ARRAY_OF)
 * as the numbers they stand for. Every half is exactly a float32, so nothing
 * is rounded.
 */
export function halvesToFloats(halves: Uint16Array): Float32Array {
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) {
    const h = halves[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0) out[i] = sign * fraction * 2 ** -24; // zero and subnormals
    else if (exponent === 0x1f) out[i] = fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else out[i] = sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return out;
}

/** A tensor's elements as JSON prints them: FP16 bit patterns become their numbers; every other type is as it is. */
export function numericView(datatype: Exclude<Datatype, 'BYTES'>, data: TensorData): TensorData {
  return datatype === 'FP16' ? halvesToFloats(data as Uint16Array) : data;
}
