import type { BatchModel, BuiltChunk, ChunkLimits } from '../chunk-builder.js';

/**
 * Messages between the gateway's event loop and its parse thread. Each
 * upload is a session (`id`); its pieces go in in order and its chunks come
 * out in order (postMessage keeps the order of one sender's messages).
 */
export type ToThread =
  | { type: 'open'; id: number; model: BatchModel; limits: ChunkLimits; maxLineBytes: number }
  /** A piece of the body; answered by 'consumed' once its lines are in chunks. */
  | { type: 'data'; id: number; bytes: Uint8Array }
  /** The body has ended: the last chunk, then 'ended'. */
  | { type: 'end'; id: number }
  /** The upload is over on the gateway's side (done, or failed): forget it. */
  | { type: 'close'; id: number };

export type FromThread =
  | { type: 'chunk'; id: number; chunk: WireChunk }
  | { type: 'consumed'; id: number }
  | { type: 'ended'; id: number }
  | { type: 'error'; id: number; message: string };

/** A BuiltChunk after postMessage: its Buffer arrives as a plain Uint8Array. */
export type WireChunk = Omit<BuiltChunk, 'packed'> & { packed: Uint8Array };
