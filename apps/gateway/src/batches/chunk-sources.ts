import { setImmediate as nextTurn } from 'node:timers/promises';
import { ChunkBuilder, type BatchModel, type BuiltChunk, type ChunkLimits } from './chunk-builder.js';
import type { InteractiveRequests } from './interactive-requests.js';
import type { RawItem } from './ndjson-lines.js';

/**
 * Where an upload's chunks come from: its items, validated and packed by a
 * ChunkBuilder, either here on the event loop (`buildChunks`) or on the
 * gateway's parse thread (LineParserThread). Either way the chunks come
 * out in order, one at a time, as fast as the batch service takes them.
 */
export type ChunkSource = AsyncIterable<BuiltChunk>;

/** Longest the build loop runs before it lets other requests in. */
const YIELD_EVERY_MS = 1;
/**
 * Longest reading an upload waits for this gateway's interactive requests
 * to be answered; under unbroken interactive load an upload slows down but
 * still moves.
 */
export const MAX_YIELD_MS = 1000;

/**
 * Build the chunks of `items` on the event loop. Used for the JSON form
 * (already parsed) and for NDJSON when there is no parse thread. Reading
 * the next items waits while interactive requests are in flight, and the
 * loop gives way every millisecond so they are served meanwhile.
 */
export async function* buildChunks(model: BatchModel, limits: ChunkLimits, items: AsyncIterable<RawItem[]>, interactive?: InteractiveRequests): ChunkSource {
  const builder = new ChunkBuilder(model, limits);
  let turn = performance.now();
  for await (const batch of items) {
    if (interactive?.busy) {
      await interactive.whenIdle(MAX_YIELD_MS);
      turn = performance.now();
    }
    for (const item of batch) {
      builder.add(item);
      if (builder.full) yield builder.take();
    }
    // Reads that are already buffered resolve as microtasks, which would
    // keep this loop from ever giving way: every few milliseconds, let
    // the event loop serve other requests (interactive jobs first of all).
    if (performance.now() - turn > YIELD_EVERY_MS) {
      await nextTurn();
      turn = performance.now();
    }
  }
  if (builder.size > 0) yield builder.take();
}
