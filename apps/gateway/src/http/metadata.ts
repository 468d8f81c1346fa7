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
 * Metadata comes back as it was sent, so a number that would not is refused
 * (422): one too large for a double (1e400 is valid JSON) parses as Infinity
 * and would print as null; an integer past 2^53 (a 19-digit order id) parses
 * as the nearest double and would print as another integer. Such ids go as
 * strings. (A double of 1e21 or more prints in exponent form, as the float
 * it is: kept.)
 */
function finiteOnly(this: unknown, key: string, value: unknown): unknown {
  if (typeof value !== 'number') return value;
  const at = `metadata${key ? `.${key}` : ''}`;
  if (!Number.isFinite(value)) throw invalidInput(`${at} holds a number too large for a double (it would come back as null)`);
  // Below 1e21 JSON prints every digit of an integer, and readers take it as exact; 1e300 prints as 1e+300.
  if (Number.isInteger(value) && !Number.isSafeInteger(value) && Math.abs(value) < 1e21) {
    throw invalidInput(`${at} holds an integer past 2^53 - 1, which would come back as another integer; send it as a string`);
  }
  return value;
}
