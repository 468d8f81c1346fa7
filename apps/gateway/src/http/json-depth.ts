/**
 * Whether a parsed JSON value nests arrays or objects deeper than `max`
 * levels. Iterative on purpose: JSON.parse reads any depth, but everything
 * recursive that comes after it (JSON.stringify, validators, a worker
 * printing the value back) overflows the stack on a hostile 10,000 levels.
 */
export function jsonDepthExceeds(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}
