import type { DecodedTensor } from './decode.js';
import { allocate, type TensorData } from './typed-arrays.js';

/**
 * Stack instances of one shape along a new first (batch) dimension. The
 * caller groups instances by shape first: docs/api.md forbids stacking instances
 * whose variable dimensions differ.
 */
export function stack(instances: readonly DecodedTensor[]): DecodedTensor {
  const first = instances[0];
  if (!first) throw new Error('stack: no instances');
  const per = first.data.length;
  const out = allocate(first.datatype, per * instances.length);
  instances.forEach((t, k) => {
    if (t.data.length !== per || t.datatype !== first.datatype) throw new Error('stack: instances differ in shape or datatype');
    (out as Float32Array).set(t.data as Float32Array, k * per);
  });
  return { datatype: first.datatype, shape: [instances.length, ...first.shape], data: out };
}

/** The offset and shape of instance k of a batched output tensor. */
export function instanceSlice(data: TensorData, dims: readonly number[], k: number): { offset: number; shape: number[] } {
  const shape = dims.slice(1);
  const per = dims[0] === 0 ? 0 : data.length / dims[0]!;
  return { offset: k * per, shape };
}

/** A key that is equal for instances that may share one stacked tensor. */
export function shapeKey(inputs: readonly DecodedTensor[]): string {
  return inputs.map((t) => t.shape.join('x')).join('|');
}
