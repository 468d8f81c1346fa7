import { MAX_METADATA_BYTES } from '@infer/contract';
import { invalidInput } from '@infer/errors';
import { jsonDepthExceeds } from './json-depth.js';

/** Deepest metadata accepted: deeper JSON is not metadata, and would overflow a recursive printer. */
export const MAX_METADATA_DEPTH = 32;

/**
 * The rules of a request's `metadata` (docs/api.md): at most MAX_METADATA_DEPTH
 * levels, numbers a double can hold, then at most MAX_METADATA_BYTES
 * serialised; 422 otherwise. The
 * depth is checked first, iteratively: JSON.stringify recurses, and a
 * hostile 10,000 levels would overflow the stack (a 500) before the size
 * could be measured.
 */
export function assertMetadataFits(metadata: Record<string, unknown>): void {
  if (jsonDepthExceeds(metadata, MAX_METADATA_DEPTH)) throw invalidInput(`metadata is nested deeper than ${MAX_METADATA_DEPTH} levels`);
  const text = JSON.stringify(metadata, finiteOnly);
  if (Buffer.byteLength(text) > MAX_METADATA_BYTES) throw invalidInput(`metadata is larger than ${MAX_METADATA_BYTES} bytes`);
}

/**
 * A number too large for a double (1e400 is valid JSON) parses as Infinity
 * and would be printed back as null: metadata comes back as it was sent, so
 * such a number is refused instead (422).
 */
function finiteOnly(this: unknown, key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) throw invalidInput(`metadata${key ? `.${key}` : ''} holds a number too large for a double (it would come back as null)`);
  return value;
}
