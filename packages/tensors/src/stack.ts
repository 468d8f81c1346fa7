import type { Datatype } from '@infer/contract';
import type { DecodedTensor } from './decode.js';
import type { BufferPool } from './buffer-pool.js';
import { fromBytes, type TensorData } from './typed-arrays.js';

/** One instance's tensor as little-endian bytes (a view of what the gateway packed; any alignment). */
export interface TensorBytes {
  datatype: Exclude<Datatype, 'BYTES'>;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * Stack instances of one shape along a new first (batch) dimension, as the
 * typed array ONNX Runtime takes. Instances that lie back to back in one
 * buffer (one envelope, as the gateway packed it) are viewed as they are,
 * with no copy at all when their span is aligned for the datatype; others
 * are copied once, into a buffer from `pool` when one is given (the caller
 * hands it back there once the run is over). The caller groups instances by
 * shape first (shapeKey): docs/api.md forbids stacking instances whose
 * variable dimensions differ.
 */
export function stack(instances: readonly TensorBytes[], pool?: BufferPool): DecodedTensor {
  const first = instances[0];
  if (!first) throw new Error('stack: no instances');
  const per = first.bytes.byteLength;
  let contiguous = true;
  for (let i = 1; i < instances.length; i++) {
    const prev = instances[i - 1]!.bytes;
    const cur = instances[i]!;
    if (cur.bytes.byteLength !== per || cur.datatype !== first.datatype) throw new Error('stack: instances differ in shape or datatype');
    contiguous &&= cur.bytes.buffer === prev.buffer && cur.bytes.byteOffset === prev.byteOffset + prev.byteLength;
  }
  const shape = [instances.length, ...first.shape];
  if (contiguous) return { datatype: first.datatype, shape, data: fromBytes(first.datatype, new Uint8Array(first.bytes.buffer, first.bytes.byteOffset, per * instances.length)) };
  const out = pool ? pool.acquire(per * instances.length) : new Uint8Array(per * instances.length);
  instances.forEach((t, k) => out.set(t.bytes, k * per));
  return { datatype: first.datatype, shape, data: fromBytes(first.datatype, out) };
}

/** The offset and shape of instance k of a batched output tensor. */
export function instanceSlice(data: TensorData, dims: readonly number[], k: number): { offset: number; shape: number[] } {
  const shape = dims.slice(1);
  const per = dims[0] === 0 ? 0 : data.length / dims[0]!;
  return { offset: k * per, shape };
}

/** A key equal for instances whose inputs have the same shapes: those may share one stacked tensor. */
export function shapeKey(inputs: readonly { shape: readonly number[] }[]): string {
  return inputs.map((t) => t.shape.join('x')).join('|');
}
