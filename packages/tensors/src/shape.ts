import type { SharedDim, TensorSpec } from '@infer/contract';
/**
 * Most elements a tensor of a request may declare, and the largest size of
 * any one dimension: 2^28 (1 GiB of FP32). No request body within
 * MAX_BODY_BYTES carries that many values; the bound is there so a declared
 * shape is refused for its size before anything is allocated or compared
 * against it, and so a zero-sized dimension cannot hide a huge one
 * (`[0, 1e15]` holds no elements, but no model should be run on it).
 */
export const MAX_TENSOR_ELEMENTS = 2 ** 28;

/** Whether a shape declares more than MAX_TENSOR_ELEMENTS elements, or a dimension larger than that. */
export function exceedsElementLimit(shape: readonly number[]): boolean {
  let n = 1;
  for (const d of shape) {
    if (d > MAX_TENSOR_ELEMENTS) return true;
    // Zero dimensions do not reset the product: each one is bounded above, and the rest still count.
    n *= Math.max(d, 1);
    if (n > MAX_TENSOR_ELEMENTS) return true;
  }
  return false;
}

/** Number of elements of a tensor of this (fully known) shape; [] is a scalar. */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Whether `shape` fits `spec`, where -1 in the spec matches any size. */
export function shapeMatches(shape: readonly number[], spec: readonly number[]): boolean {
  if (shape.length !== spec.length) return false;
  for (let i = 0; i < shape.length; i++) {
    const want = spec[i]!;
    if (want !== -1 && want !== shape[i]) return false;
  }
  return true;
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/**
 * Where a job's input shapes (in the model's input order, each as its spec
 * counts it: the batch axis left out) give a shared dimension two lengths:
 * what to tell the client, or undefined when they agree. ONNX Runtime checks
 * only ranks and fixed sizes, so such a job would run, fail or broadcast
 * one input over the other.
 */
export function sharedDimMismatch(sharedDims: readonly SharedDim[] | undefined, specs: readonly TensorSpec[], shapes: ReadonlyArray<readonly number[]>): string | undefined {
  for (const { name, at } of sharedDims ?? []) {
    const first = at[0]!;
    const size = shapes[first.input]?.[first.axis];
    for (const other of at.slice(1)) {
      const s = shapes[other.input]?.[other.axis];
      if (size === undefined || s === undefined || s === size) continue;
      const where = (p: { input: number; axis: number }, n: number) => `input "${specs[p.input]!.name}" has ${n} along its axis ${p.axis}`;
      return `the model names dimension "${name}" in more than one place, which takes one length: ${where(first, size)}, ${where(other, s)}`;
    }
  }
  return undefined;
}
