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
