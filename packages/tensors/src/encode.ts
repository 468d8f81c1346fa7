import type { EncodedTensor } from '@infer/contract';
import type { NestedArray } from '@infer/contract';
import type { DecodedTensor } from './decode.js';
import { toBytes, type TensorData } from './typed-arrays.js';

/** The canonical queue form of a decoded tensor. */
export function encodeTensor(t: DecodedTensor): EncodedTensor {
  return { datatype: t.datatype, shape: t.shape, b64: toBytes(t.data).toString('base64') };
}




/**
 * Render a flat typed array as a nested JSON array of `shape` (a bare value
 * for a scalar). `boolean` says the bytes are a BOOL tensor.
 */
export function toNested(data: TensorData, shape: readonly number[], boolean = false, offset = 0): NestedArray {
  let i = offset;
  const read = (): number | boolean => {
    const v = data[i++]!;
    if (boolean) return v !== 0;
    return typeof v === 'bigint' ? Number(v) : v;
  };
  const build = (depth: number): NestedArray => {
    if (depth === shape.length) return read();
    const n = shape[depth]!;
    const row: NestedArray[] = new Array(n);
    for (let k = 0; k < n; k++) row[k] = build(depth + 1);
    return row;
  };
  return build(0);
}
