import { MAX_METADATA_BYTES } from '@infer/contract';
import { invalidInput } from '@infer/errors';
import { jsonDepthExceeds } from './json-depth.js';

/** Deepest metadata accepted: deeper JSON is not metadata, and would overflow a recursive printer. */
export const MAX_METADATA_DEPTH = 32;

/**
 * The rules of a request's `metadata` (docs/api.md): at most MAX_METADATA_DEPTH
 * levels, then at most MAX_METADATA_BYTES serialised; 422 otherwise. The
 * depth is checked first, iteratively: JSON.stringify recurses, and a
 * hostile 10,000 levels would overflow the stack (a 500) before the size
 * could be measured.
 */
export function assertMetadataFits(metadata: Record<string, unknown>): void {
  if (jsonDepthExceeds(metadata, MAX_METADATA_DEPTH)) throw invalidInput(`metadata is nested deeper than ${MAX_METADATA_DEPTH} levels`);
  if (Buffer.byteLength(JSON.stringify(metadata)) > MAX_METADATA_BYTES) throw invalidInput(`metadata is larger than ${MAX_METADATA_BYTES} bytes`);
}
