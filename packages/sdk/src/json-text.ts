/**
 * A request body as JSON text, with `-0` kept and non-finite numbers refused.
 * JSON carries `-0` (a JSON number) and the gateway hands it to the model as
 * it came, but JSON.stringify writes it `0`: a tensor sent through the SDK
 * would reach the model with another value than the same JSON sent by hand
 * (a model can tell them apart: 1 / x). JSON has no NaN or Infinity, and
 * JSON.stringify writes them `null`: metadata would be stored changed, and a
 * tensor refused with a puzzling error, so they are a TypeError here.
 * JSON.stringify still does the writing; a body holding a -0 (rare: looked
 * for first) is written with a replacer that leaves a marker for each, then
 * put back as `-0`.
 */
export function jsonText(value: unknown): string {
  if (!hasNegativeZero(value)) return JSON.stringify(value);
  const text = JSON.stringify(value, (_key, v: unknown) => (v === 0 && 1 / v < 0 ? MARKER : v));
  return text.replaceAll(QUOTED_MARKER, '-0');
}

/** A string no caller sends: U+0000 is escaped by JSON.stringify, so its quoted form cannot come from a caller's string that is not this one. */
const MARKER = `\u0000infer-sdk:-0\u0000`;
const QUOTED_MARKER = JSON.stringify(MARKER);

/** Whether `value` holds a -0; throws on a NaN or ±Infinity, which JSON cannot carry. */
function hasNegativeZero(value: unknown): boolean {
  const stack: unknown[] = [value];
  // Each object is looked into once: one met again is shared (fine) or holds itself (JSON.stringify then
  // throws its own TypeError), and a cycle would otherwise be walked until the heap ran out.
  const seen = new WeakSet<object>();
  let found = false;
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'object' && v !== null) {
      if (seen.has(v)) continue;
      seen.add(v);
    }
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) {
        throw new TypeError(`${v} cannot be sent as JSON (it has no NaN or Infinity): send such tensor values as b64, and keep them out of metadata`);
      }
      if (v === 0 && 1 / v < 0) found = true;
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push(v[i]);
    } else if (typeof v === 'object' && v !== null && !ArrayBuffer.isView(v)) {
      const json = (v as { toJSON?: unknown }).toJSON;
      if (typeof json !== 'function') for (const x of Object.values(v)) stack.push(x);
    }
  }
  return found;
}
