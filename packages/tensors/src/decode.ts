import { BYTES_PER_ELEMENT, halfBits, isDatatype, type Datatype, type EncodedTensor, type TensorSpec } from '@infer/contract';
import { invalidInput } from '@infer/errors';
import { elementCount, exceedsElementLimit, formatShape, MAX_TENSOR_ELEMENTS, shapeMatches } from './shape.js';
import { allocate, fromBytes, type TensorData } from './typed-arrays.js';

/** A tensor held as a typed array, ready for ONNX Runtime. */
export interface DecodedTensor {
  datatype: Exclude<Datatype, 'BYTES'>;
  shape: number[];
  data: TensorData;
}

const MAX_RANK = 16;
const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Turn one request value, in any of the three forms docs/api.md allows, into a
 * typed array checked against the spec. Throws a 422 AppError naming the
 * input and what is wrong; never anything else for bad client data.
 */
export function decodeInput(value: unknown, spec: TensorSpec, label = `input "${spec.name}"`): DecodedTensor {
  const datatype = supportedDatatype(spec.datatype, label);
  if (isPlainObject(value)) return decodeTyped(value, spec, datatype, label);
  return decodeNested(value, spec, datatype, label);
}

/** Decode the canonical queue form; the worker calls this after dequeueing. */
export function decodeEncoded(tensor: EncodedTensor, spec: TensorSpec, label = `input "${spec.name}"`): DecodedTensor {
  return decodeTyped(tensor as unknown as Record<string, unknown>, spec, supportedDatatype(spec.datatype, label), label);
}

function supportedDatatype(dt: Datatype, label: string): Exclude<Datatype, 'BYTES'> {
  if (dt === 'BYTES') throw invalidInput(`${label}: BYTES (string) tensors are not supported`);
  return dt;
}

function decodeTyped(
  obj: Record<string, unknown>,
  spec: TensorSpec,
  datatype: Exclude<Datatype, 'BYTES'>,
  label: string,
): DecodedTensor {
  const { datatype: given, shape, data, b64 } = obj;
  for (const key of Object.keys(obj)) {
    if (key !== 'datatype' && key !== 'shape' && key !== 'data' && key !== 'b64') {
      throw invalidInput(`${label}: unknown field "${key}" (expected datatype, shape and data or b64)`);
    }
  }
  if (!isDatatype(given)) throw invalidInput(`${label}: "datatype" must be one of the Open Inference Protocol names`);
  if (given !== datatype) throw invalidInput(`${label}: datatype ${given} given, the model takes ${datatype}`);
  if (!Array.isArray(shape) || shape.length > MAX_RANK || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw invalidInput(`${label}: "shape" must be an array of non-negative integers`);
  }
  const dims = shape as number[];
  if (!shapeMatches(dims, spec.shape)) {
    throw invalidInput(`${label}: shape ${formatShape(dims)} does not match the model's ${formatShape(spec.shape)}`);
  }
  // Before anything is sized from it: a declared [3, 1e9, 1e9] is refused for what it declares.
  if (exceedsElementLimit(dims)) {
    throw invalidInput(`${label}: shape ${formatShape(dims)} declares more than ${MAX_TENSOR_ELEMENTS} elements (or a dimension larger than that)`);
  }
  const count = elementCount(dims);
  if ((data === undefined) === (b64 === undefined)) {
    throw invalidInput(`${label}: give exactly one of "data" (flat values) or "b64" (little-endian bytes)`);
  }
  if (b64 !== undefined) {
    // A Uint8Array is a value already decoded (and checked) from the request's bytes: see liftBase64.
    if (!(b64 instanceof Uint8Array) && (typeof b64 !== 'string' || b64.length % 4 !== 0 || !B64_RE.test(b64))) {
      throw invalidInput(`${label}: "b64" must be standard, padded base64`);
    }
    // The decoded length from the text's, so a wrong size is refused before the bytes are decoded.
    const held = b64 instanceof Uint8Array ? b64.byteLength : (b64.length / 4) * 3 - (b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0);
    const want = count * BYTES_PER_ELEMENT[datatype];
    if (held !== want) {
      throw invalidInput(`${label}: "b64" holds ${held} bytes, shape ${formatShape(dims)} of ${datatype} needs ${want}`);
    }
    const bytes = b64 instanceof Uint8Array ? b64 : Buffer.from(b64, 'base64');
    const typed = fromBytes(datatype, bytes);
    checkRawValues(typed, datatype, label);
    return { datatype, shape: dims, data: typed };
  }
  if (!Array.isArray(data)) throw invalidInput(`${label}: "data" must be a flat array of values`);
  if (data.length !== count) {
    throw invalidInput(`${label}: "data" has ${data.length} values, shape ${formatShape(dims)} needs ${count}`);
  }
  const out = allocate(datatype, count);
  for (let i = 0; i < count; i++) writeValue(out, i, data[i], datatype, label);
  return { datatype, shape: dims, data: out };
}

function decodeNested(value: unknown, spec: TensorSpec, datatype: Exclude<Datatype, 'BYTES'>, label: string): DecodedTensor {
  // Infer the shape from the first element at each depth, check that every
  // row has it, then copy every element (checking each value on the way).
  const shape: number[] = [];
  let probe: unknown = value;
  while (Array.isArray(probe)) {
    if (shape.length >= MAX_RANK) throw invalidInput(`${label}: nested deeper than ${MAX_RANK} levels`);
    shape.push(probe.length);
    probe = probe[0];
  }
  if (!shapeMatches(shape, spec.shape)) {
    const what = shape.length === 0 && typeof value !== 'number' && typeof value !== 'boolean' ? 'a value that is not a tensor' : `shape ${formatShape(shape)}`;
    throw invalidInput(`${label}: ${what} does not match the model's ${formatShape(spec.shape)}`);
  }
  // Rectangular first, then allocated: a small ragged body may claim a huge shape by its first rows
  // ([[40,000 items], [1], …] as 3 × 40,000 × 40,000), which must be a 422, not gigabytes allocated.
  // (This looks at the arrays only, not at the values.)
  const ragged = (depth: number) => invalidInput(`${label}: ragged nested array (every row at depth ${depth} must have ${shape[depth]} items)`);
  const rectangular = (node: unknown, depth: number): void => {
    if (!Array.isArray(node) || node.length !== shape[depth]) throw ragged(depth);
    if (depth + 1 < shape.length) for (const child of node) rectangular(child, depth + 1);
  };
  if (shape.length > 0) rectangular(value, 0);
  if (exceedsElementLimit(shape)) throw invalidInput(`${label}: more than ${MAX_TENSOR_ELEMENTS} elements`);
  const out = allocate(datatype, elementCount(shape));
  let next = 0;
  const walk = (node: unknown, depth: number): void => {
    if (depth === shape.length) {
      writeValue(out, next++, node, datatype, label);
      return;
    }
    for (const child of node as unknown[]) walk(child, depth + 1);
  };
  walk(value, 0);
  return { datatype, shape, data: out };
}

const INT_RANGES: Partial<Record<Datatype, [number, number]>> = {
  INT8: [-128, 127],
  UINT8: [0, 255],
  INT16: [-32768, 32767],
  UINT16: [0, 65535],
  INT32: [-2147483648, 2147483647],
  UINT32: [0, 4294967295],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
};

function writeValue(out: TensorData, i: number, v: unknown, datatype: Exclude<Datatype, 'BYTES'>, label: string): void {
  switch (datatype) {
    case 'FP32':
    case 'FP64':
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        throw invalidInput(`${label}: value ${describe(v)} at index ${i} is not a finite number`);
      }
      out[i] = v;
      // 1e39 is a finite double but overflows FP32 to Infinity.
      if (!Number.isFinite(out[i] as number)) {
        throw invalidInput(`${label}: value ${describe(v)} at index ${i} overflows ${datatype}`);
      }
      return;
    case 'FP16': {
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        throw invalidInput(`${label}: value ${describe(v)} at index ${i} is not a finite number`);
      }
      // Rounded to the nearest half (ties to even), as a Float32Array rounds FP32; past 65504 it would be infinity.
      const bits = halfBits(v);
      if ((bits & 0x7fff) === 0x7c00) throw invalidInput(`${label}: value ${describe(v)} at index ${i} overflows FP16`);
      out[i] = bits;
      return;
    }
    case 'BOOL':
      if (typeof v !== 'boolean') throw invalidInput(`${label}: value ${describe(v)} at index ${i} is not a boolean`);
      out[i] = v ? 1 : 0;
      return;
    default: {
      const [lo, hi] = INT_RANGES[datatype]!;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
        throw invalidInput(`${label}: value ${describe(v)} at index ${i} is not a ${datatype} integer`);
      }
      if (datatype === 'INT64' || datatype === 'UINT64') (out as BigInt64Array)[i] = BigInt(v);
      else out[i] = v;
    }
  }
}

/** Bytes sent as b64 skip JSON, so check what JSON parsing would have caught. */
function checkRawValues(data: TensorData, datatype: Datatype, label: string): void {
  const bad = firstBadRawValue(data, datatype);
  if (bad < 0) return;
  if (datatype === 'BOOL') throw invalidInput(`${label}: BOOL bytes must be 0 or 1 (index ${bad})`);
  throw invalidInput(`${label}: value at index ${bad} is not a finite number`);
}

/**
 * Index of the first value raw bytes may hold but a JSON value could not
 * (NaN or an infinity in a float tensor, a BOOL byte other than 0 or 1), or
 * -1 when there is none. `from`/`to` bound the elements looked at.
 */
export function firstBadRawValue(data: TensorData, datatype: Datatype, from = 0, to = data.length): number {
  // One loop per element type, each over a whole array (the range as a view): a loop handed any
  // typed array turns polymorphic, and one bounded by `to` checks every index; together they ran
  // a 3x48x192 image in ~80-100 µs, against ~40-70 µs.
  const whole = from === 0 && to === data.length;
  if (datatype === 'FP32') return firstNonFinite32(whole ? (data as Float32Array) : (data as Float32Array).subarray(from, to));
  if (datatype === 'FP64') return firstNonFinite64(whole ? (data as Float64Array) : (data as Float64Array).subarray(from, to));
  if (datatype === 'FP16') return firstNonFinite16(whole ? (data as Uint16Array) : (data as Uint16Array).subarray(from, to));
  if (datatype === 'BOOL') return firstNonBit(whole ? (data as Uint8Array) : (data as Uint8Array).subarray(from, to));
  return -1;
}

function firstNonFinite32(floats: Float32Array): number {
  for (let i = 0; i < floats.length; i++) {
    // x - x is 0 for a finite x, NaN for NaN and the infinities.
    const x = floats[i]!;
    if (x - x !== 0) return i;
  }
  return -1;
}

function firstNonFinite64(floats: Float64Array): number {
  for (let i = 0; i < floats.length; i++) {
    const x = floats[i]!;
    if (x - x !== 0) return i;
  }
  return -1;
}

function firstNonFinite16(halves: Uint16Array): number {
  for (let i = 0; i < halves.length; i++) {
    // Exponent bits all ones: Inf or NaN.
    if ((halves[i]! & 0x7c00) === 0x7c00) return i;
  }
  return -1;
}

function firstNonBit(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! > 1) return i;
  }
  return -1;
}

/**
 * A value for an error message. Never JSON.stringify of an object or array:
 * it recurses, and a hostile value nested 10,000 levels deep would overflow
 * the stack (a 500 instead of the 422 this message is for).
 */
function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object' && v !== null) return 'an object';
  const s = typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) : v) : String(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
